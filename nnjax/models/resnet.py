"""CIFAR-style residual networks (He et al., 2016): `ResNet`, `ResNet18`, `ResNet20`, and `Airbench94`."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nnjax import layers
from nnjax.layers.utils import check_choice
from nnjax.models.base import Composite, build_chain, output_shape
from nnjax.models.mlp import _classifier_activation


def _conv(filters, kernel_size, strides=1):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal")


class BasicBlock(Composite):
    """Two 3x3 convolutions with batch norm and a shortcut: `relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`.

    Args:
      filters: output channels.
      strides: stride of the first convolution (2 halves the resolution).
      shortcut: how the shortcut changes shape when it must: "projection" (1x1 conv + batch norm,
        He et al.'s option B) or "pad" (subsample and zero-pad the channels, option A: no weights).
      momentum / epsilon: of the batch normalisations.
    """

    def __init__(self, filters: int, strides: int = 1, shortcut: str = "projection", momentum: float = 0.9,
                 epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.shortcut = check_choice(shortcut, ("projection", "pad"), "shortcut", f'BasicBlock "{self.name}"')
        self.momentum, self.epsilon = momentum, epsilon
        self.conv1 = _conv(filters, 3, strides)
        self.bn1 = layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
        self.conv2 = _conv(filters, 3)
        self.bn2 = layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
        self._ndim = 4

    def build(self, input_shape, key):
        build_chain([self.conv1, self.bn1, self.conv2, self.bn2], input_shape)
        self.reshape_shortcut = self.strides != 1 or input_shape[-1] != self.filters
        self.projection = self.reshape_shortcut and self.shortcut == "projection"
        if self.projection:
            self.shortcut_conv = _conv(self.filters, 1, self.strides)
            self.shortcut_bn = layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon)
            build_chain([self.shortcut_conv, self.shortcut_bn], input_shape)

    def call(self, x, *, training=False, key=None):
        y = jax.nn.relu(self.bn1(self.conv1(x), training=training))
        y = self.bn2(self.conv2(y), training=training)
        if self.projection:
            shortcut = self.shortcut_bn(self.shortcut_conv(x), training=training)
        elif self.reshape_shortcut:  # option A: subsample, then zero-pad the new channels on both sides
            shortcut = x[:, :: self.strides, :: self.strides, :]
            extra = self.filters - x.shape[-1]
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        else:
            shortcut = x
        return jax.nn.relu(y + shortcut)


class ResNet(Composite):
    """A CIFAR-style ResNet: 3x3 stem, stages of `BasicBlock`s, global average pooling, classifier.

    Each stage after the first halves the resolution in its first block. `ResNet20()` and
    `ResNet18()` give the two standard CIFAR-10 networks.

    Parameters at the default size (ResNet-20, 10 classes, 32x32x3 inputs): **269,722** trainable
    (He et al.'s "0.27M") plus 1,376 batch-norm statistics.

    Args:
      stage_sizes: blocks per stage ((3, 3, 3) for ResNet-20).
      widths: channels per stage ((16, 32, 64)).
      num_classes: outputs (10).
      shortcut: "pad" (option A, ResNet-20 in the paper) or "projection" (option B).
      stem_width: channels of the stem convolution (`widths[0]` when None).
      momentum / epsilon: batch norm (0.9 and 1e-5, PyTorch's defaults).
      classifier_activation: "softmax" by default ("auto"), None for logits.

    Input `(batch, 32, 32, 3)` (any size works), output `(batch, num_classes)`.
    """

    def __init__(self, stage_sizes: Sequence[int] = (3, 3, 3), widths: Sequence[int] = (16, 32, 64), num_classes: int = 10,
                 shortcut: str = "pad", stem_width: int | None = None, momentum: float = 0.9, epsilon: float = 1e-5,
                 classifier_activation="auto", **kwargs):
        super().__init__(**kwargs)
        if len(stage_sizes) != len(widths):
            raise ValueError(f'ResNet "{self.name}": `stage_sizes` and `widths` must have the same length; got {stage_sizes} and {widths}')
        self.stem = _conv(stem_width or widths[0], 3)
        self.stem_bn = layers.BatchNormalization(momentum=momentum, epsilon=epsilon)
        blocks = []
        for stage, (size, width) in enumerate(zip(stage_sizes, widths, strict=True)):
            for index in range(size):
                strides = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(width, strides, shortcut=shortcut, momentum=momentum, epsilon=epsilon))
        self.blocks = nnx.List(blocks)
        self.pool = layers.GlobalAveragePooling2D()
        self.classifier = layers.Dense(num_classes, activation=_classifier_activation(classifier_activation, num_classes))
        self._ndim = 4

    def build(self, input_shape, key):
        build_chain([self.stem, self.stem_bn, *self.blocks, self.pool, self.classifier], input_shape)

    def call(self, x, *, training=False, key=None):
        x = jax.nn.relu(self.stem_bn(self.stem(x), training=training))
        for block in self.blocks:
            x = block(x, training=training)
        return self.classifier(self.pool(x))


def ResNet20(num_classes: int = 10, **kwargs) -> ResNet:  # noqa: N802 - a model name
    """ResNet-20 for CIFAR (He et al., 2016, section 4.2): 3 stages of 3 blocks, 16/32/64 channels, option-A shortcuts.

    Parameters (10 classes): **269,722** trainable, 1,376 batch-norm statistics.
    """
    return ResNet((3, 3, 3), (16, 32, 64), num_classes=num_classes, shortcut="pad", **kwargs)


def ResNet18(num_classes: int = 10, **kwargs) -> ResNet:  # noqa: N802 - a model name
    """ResNet-18 for CIFAR: 3x3 stem (no max pool), 4 stages of 2 blocks, 64/128/256/512 channels, 1x1 projections.

    Parameters (10 classes): **11,173,962** trainable (the widely used CIFAR ResNet-18), 9,600
    batch-norm statistics.
    """
    return ResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes=num_classes, shortcut="projection", **kwargs)


class _ConvGroup(Composite):
    """airbench's block: conv3x3 - maxpool2 - BN - GELU - conv3x3 - BN - GELU (no conv biases, BN without scale)."""

    def __init__(self, filters: int, momentum: float, epsilon: float, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.pool = layers.MaxPooling2D(2)
        self.bn1 = layers.BatchNormalization(momentum=momentum, epsilon=epsilon, scale=False)
        self.conv2 = layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn2 = layers.BatchNormalization(momentum=momentum, epsilon=epsilon, scale=False)

    def build(self, input_shape, key):
        build_chain([self.conv1, self.pool, self.bn1, self.conv2, self.bn2], input_shape)

    def call(self, x, *, training=False, key=None):
        x = self.bn1(self.pool(self.conv1(x)), training=training)
        x = jax.nn.gelu(x, approximate=False)
        x = self.bn2(self.conv2(x), training=training)
        return jax.nn.gelu(x, approximate=False)


class Airbench94(Composite):
    """The airbench94 network (Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", 2024).

    2x2 patch-whitening conv (24 channels, with bias) - GELU - three conv groups of 64/256/256
    channels (each conv3x3 - maxpool - BN - GELU - conv3x3 - BN - GELU) - 3x3 max pool - linear
    (no bias) - scaled by 1/9. Batch norms have no scale and a bias, momentum 0.4 in Keras's
    convention (PyTorch's 0.6) and epsilon 1e-12, as in airbench.

    Parameters at the default size (32x32x3 inputs, 10 classes): **1,971,640** trainable plus
    2,304 batch-norm statistics. `init_whitening(images)` sets the whitening conv from the
    eigenvectors of the image-patch covariance, as airbench does before training. The training
    recipe (Nesterov SGD, label smoothing, lookahead EMA, test-time augmentation) is not part of the
    model.

    Args:
      widths: channels of the three conv groups ((64, 256, 256)).
      num_classes: outputs (10).
      scaling_factor: logits multiplier (1/9).
      classifier_activation: "softmax" by default ("auto"), None for logits.
    """

    def __init__(self, widths: Sequence[int] = (64, 256, 256), num_classes: int = 10, scaling_factor: float = 1 / 9,
                 momentum: float = 0.4, epsilon: float = 1e-12, classifier_activation="auto", **kwargs):
        super().__init__(**kwargs)
        self.whiten = layers.Conv2D(24, 2, padding="valid", use_bias=True)
        self.groups = nnx.List([_ConvGroup(w, momentum, epsilon) for w in widths])
        self.pool = layers.MaxPooling2D(3)
        self.flatten = layers.Flatten()
        self.classifier = layers.Dense(num_classes, use_bias=False)
        self.scaling_factor = float(scaling_factor)
        self.classifier_activation = _classifier_activation(classifier_activation, num_classes)
        self.output_activation = layers.Activation(self.classifier_activation)
        self._ndim = 4

    def build(self, input_shape, key):
        shape = build_chain([self.whiten, *self.groups, self.pool, self.flatten, self.classifier], input_shape)
        output_shape(self.output_activation, shape)

    def call(self, x, *, training=False, key=None):
        x = jax.nn.gelu(self.whiten(x), approximate=False)
        for group in self.groups:
            x = group(x, training=training)
        x = self.classifier(self.flatten(self.pool(x)))
        return self.output_activation(x * self.scaling_factor)

    def init_whitening(self, images, epsilon: float = 5e-4) -> None:
        """Sets the whitening conv from the patch covariance of `images` `(N, H, W, 3)`, as airbench does.

        The kernel holds the eigenvectors of the (uncentred) 2x2-patch covariance scaled by
        `1 / sqrt(eigenvalue + epsilon)`, largest first, followed by their negatives; the bias is zero.
        """
        images = np.asarray(images, np.float64)
        if not self.built:
            self(jnp.asarray(images[:1], jnp.float32))
        kh, kw, channels, filters = self.whiten.kernel.shape
        h, w = images.shape[1] - kh + 1, images.shape[2] - kw + 1
        patches = np.stack([images[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=3)
        patches = patches.reshape(-1, kh * kw * channels)  # (kh, kw, c) order, as the kernel
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1]
        scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + epsilon)
        kernel = np.concatenate([scaled, -scaled], axis=1)[:, :filters].reshape(kh, kw, channels, filters)
        self.whiten.kernel[...] = jnp.asarray(kernel, self.whiten.kernel.dtype)
        self.whiten.bias[...] = jnp.zeros_like(self.whiten.bias[...])


__all__ = ["Airbench94", "BasicBlock", "ResNet", "ResNet18", "ResNet20"]
