"""Chapter 5's checker: a hand-written RMSE on [0, 1] images."""

import pytest
import torch

from colddiff_lib.exercises.ch05 import check_rmse


def good_rmse(x, y):
    a, b = (x + 1) / 2, (y + 1) / 2
    return float((a - b).pow(2).flatten(1).mean(1).sqrt().mean())


def test_a_correct_rmse_passes(capsys):
    assert check_rmse(good_rmse) is True
    assert "Correct" in capsys.readouterr().out
    # A 0-d tensor is a fine answer too.
    assert check_rmse(lambda x, y: torch.tensor(good_rmse(x, y))) is True


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, y: float((x - y).pow(2).flatten(1).mean(1).sqrt().mean()), "[0, 1]"),
    (lambda x, y: float(((x - y) / 2).pow(2).mean().sqrt()), "whole batch"),
    (lambda x, y: float(((x - y) / 2).pow(2).flatten(1).mean(1).mean()), "mean squared error"),
    (lambda x, y: float(((x - y) / 2).abs().flatten(1).mean(1).mean()), "absolute"),
    (lambda x, y: float(((x - y) / 2).pow(2).flatten(1).mean(1).sqrt().sum()), "summed"),
    (lambda x, y: 0.123, "instead of"),
])
def test_typical_mistakes_fail_with_a_useful_message(wrong, hint, capsys):
    assert check_rmse(wrong) is False
    out = capsys.readouterr().out
    assert "Not yet" in out and hint in out


def test_a_constant_equal_to_the_first_answer_does_not_pass(capsys):
    from colddiff_lib.exercises.ch05 import _test_pairs
    from colddiff_lib.metrics import rmse

    x, y = _test_pairs()
    value = rmse(x, y)
    assert check_rmse(lambda a, b: value) is False
    assert "another" in capsys.readouterr().out


def test_wrong_types_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(0.25)
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(lambda x, y: "0.25")
    with pytest.raises(ValueError, match="my_rmse"):
        check_rmse(lambda x, y: (x - y).flatten(1).mean(1))
