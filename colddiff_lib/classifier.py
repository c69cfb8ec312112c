"""A small digit classifier: the feature network of the offline FID, and a judge of generated digits.

Inception weights cannot be downloaded offline, so FID here uses the penultimate features of this
network, trained by the project on the 4,000 training digits of ``mnist5k``. Its FID values measure
the same thing (the distance between two Gaussians fitted to features) but on another feature
space: they are not comparable with Inception FID values in papers.
"""

from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F

from .runtime import random_shift, resolve_device, step_generator


class DigitClassifier(nn.Module):
    """A four-convolution CNN for 1 x 32 x 32 digits.

    ``forward(x)``: images [B, 1, 32, 32] in [-1, 1] -> logits [B, 10].
    ``features(x)``: the same images -> penultimate features [B, num_features].
    """

    num_features = 128

    def __init__(self, num_classes: int = 10, width: int = 32, dropout: float = 0.3):
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding=1),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )

        self.body = nn.Sequential(
            block(1, width), block(width, 2 * width), block(2 * width, 4 * width)
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * width * 16, self.num_features),
            nn.ReLU(),
        )
        self.out = nn.Linear(self.num_features, num_classes)

    def _check(self, x: torch.Tensor) -> None:
        if (
            not isinstance(x, torch.Tensor)
            or x.dim() != 4
            or tuple(x.shape[1:]) != (1, 32, 32)
        ):
            raise ValueError(
                f"x must be digits [B, 1, 32, 32], got shape {tuple(getattr(x, 'shape', ()))}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class UnitFeatures(nn.Module):
    """The classifier's features for images in [0, 1] (what torchmetrics' FID passes with normalize=True)."""

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier.eval()
        self.num_features = classifier.num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float() * 2 - 1)


def train_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 3000,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device="cpu",
    augment_shift: int = 2,
    progress: bool = False,
) -> DigitClassifier:
    """Train :class:`DigitClassifier` on ``images`` [N, 1, 32, 32] in [-1, 1] and ``labels`` LongTensor[N].

    AdamW with a one-cycle learning rate, random shifts of up to ``augment_shift`` pixels; seeded.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels must have the same length, got {images.shape[0]} and {labels.shape[0]}"
        )
    dev = resolve_device(device)
    torch.manual_seed(seed)
    model = DigitClassifier().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    images, labels = images.to(dev), labels.to(dev)
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc="classifier")
    model.train()
    for step in bar:
        g = step_generator(seed, 0, step)
        idx = torch.randint(0, len(images), (batch_size,), generator=g).to(dev)
        x = random_shift(images[idx], augment_shift, g)
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def probabilities(
    model: DigitClassifier, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Class probabilities [N, 10] (softmax of the logits, on the CPU) for digits [N, 1, 32, 32] in [-1, 1]."""
    model.eval()
    dev = next(model.parameters()).device
    return torch.cat(
        [
            model(chunk.to(dev)).float().softmax(1).cpu()
            for chunk in images.split(batch_size)
        ]
    )


def predict(
    model: DigitClassifier, images: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Predicted classes LongTensor[N] for digits [N, 1, 32, 32] in [-1, 1]."""
    return probabilities(model, images, batch_size).argmax(1)


def accuracy(
    model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """Fraction of ``images`` classified as ``labels``."""
    return float((predict(model, images) == labels.cpu()).float().mean())


def class_histogram(
    model: DigitClassifier, images: torch.Tensor, num_classes: int = 10
) -> list:
    """How many of ``images`` the classifier assigns to each class: a list of ``num_classes`` ints."""
    return torch.bincount(predict(model, images), minlength=num_classes).tolist()
