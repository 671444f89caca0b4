"""dayfly.toml parsing: valid keys pass through, every mistake names the key."""

import pytest

from dayfly.control import manifest
from dayfly.errors import InvalidParameter


def test_full_manifest():
    m = manifest.parse('''
        handler = "app.main"
        memory = 256
        timeout = 2.5
        max_instances = 4
        min_warm = 1
        idle_timeout = 60
        isolation = "process"
        description = "d"
        [env]
        A = "x"
        B = 3
        C = true
    '''.replace("\n        ", "\n"))
    assert m.given() == {"handler": "app.main", "memory": 256, "timeout": 2.5,
                         "max_instances": 4, "min_warm": 1, "idle_timeout": 60.0,
                         "isolation": "process", "description": "d",
                         "env": {"A": "x", "B": "3", "C": "true"}}


def test_empty_manifest_says_nothing():
    assert manifest.parse("").given() == {}


@pytest.mark.parametrize("text,needle", [
    ('memroy = 128', "unknown key(s) memroy"),
    ('memory = "lots"', "'memory' must be an integer"),
    ('memory = 64', "from 128 to 10240"),
    ('timeout = 0', "'timeout' must be a number"),
    ('handler = "nodot"', "module.function"),
    ('isolation = "vm"', "'isolation' must be one of"),
    ('[env]\nAWS_REGION = "x"', "reserved"),
    ('[env]\n"1BAD" = "x"', "invalid variable name"),
    ('min_warm = 5\nmax_instances = 2', "cannot exceed"),
    ('handler = ', "not valid TOML"),
])
def test_mistakes_are_named(text, needle):
    with pytest.raises(InvalidParameter) as info:
        manifest.parse(text)
    assert needle in info.value.message
