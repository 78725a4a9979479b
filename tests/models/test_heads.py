"""Temporal heads: what they see of a clip is its valid steps, never the padding."""

from __future__ import annotations

import pytest
import torch

from vidfeat.config import HEADS
from vidfeat.models.heads import build_head

DIM, CLASSES, STEPS = 6, 3, 5


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_clips_prediction_does_not_depend_on_its_padding(head: str, bidirectional: bool) -> None:
    """The same 5 valid steps, padded to 8 or 16 with zeros (as the trainer pads) or with
    noise, in a batch beside a full-length clip: the same logits."""
    torch.manual_seed(0)
    model = build_head(head, DIM, CLASSES, hidden=8, bidirectional=bidirectional).eval()
    clip = torch.randn(STEPS, DIM)
    outputs = []
    for total, fill in ((8, "zeros"), (16, "zeros"), (16, "noise")):
        x = torch.randn(2, total, DIM) if fill == "noise" else torch.zeros(2, total, DIM)
        x[0, :STEPS] = clip
        x[1] = torch.randn(total, DIM)
        mask = torch.zeros(2, total, dtype=torch.bool)
        mask[0, :STEPS] = True
        mask[1] = True
        with torch.no_grad():
            outputs.append(model(x, mask)[0])
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0], atol=1e-5, rtol=1e-5)
