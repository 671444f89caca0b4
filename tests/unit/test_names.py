"""Function names, qualifiers and ARNs as Lambda accepts them."""

import pytest

from dayfly.control.registry import split_name
from dayfly.errors import InvalidParameter


@pytest.mark.parametrize("given,qualifier,expected", [
    ("fn", None, ("fn", None)),
    ("fn:prod", None, ("fn", "prod")),
    ("fn:7", None, ("fn", "7")),
    ("fn", "$LATEST", ("fn", "$LATEST")),
    ("arn:aws:lambda:us-east-1:000000000000:function:fn", None, ("fn", None)),
    ("arn:aws:lambda:us-east-1:000000000000:function:fn:live", None, ("fn", "live")),
    ("000000000000:function:fn", None, ("fn", None)),
])
def test_accepted_forms(given, qualifier, expected):
    assert split_name(given, qualifier) == expected


def test_conflicting_qualifiers():
    with pytest.raises(InvalidParameter, match="does not match"):
        split_name("fn:a", "b")


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "x" * 65, "fn:"])
def test_rejected(bad):
    with pytest.raises(InvalidParameter):
        split_name(bad)
