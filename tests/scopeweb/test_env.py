from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from scopeweb.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_path,
    env_rate,
    env_secret,
    env_str,
)


@pytest.mark.parametrize("raw", ["1", "true", "YES", "on", " True "])
def test_env_bool_reads_true_spellings(raw: str) -> None:
    assert env_bool("X", False, environ={"X": raw}) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "off", ""])
def test_env_bool_reads_false_spellings(raw: str) -> None:
    assert env_bool("X", True, environ={"X": raw}) is False


def test_env_bool_names_the_variable_on_nonsense() -> None:
    with pytest.raises(ImproperlyConfigured, match="SCOPEWEB_DEBUG='maybe' is not a boolean"):
        env_bool("SCOPEWEB_DEBUG", environ={"SCOPEWEB_DEBUG": "maybe"})


def test_env_bool_default_when_unset() -> None:
    assert env_bool("X", True, environ={}) is True


def test_env_int_parses_and_checks_bounds() -> None:
    assert env_int("PORT", 8000, environ={"PORT": "9000"}) == 9000
    assert env_int("PORT", 8000, environ={}) == 8000
    with pytest.raises(ImproperlyConfigured, match="PORT='80a' is not a whole number"):
        env_int("PORT", 1, environ={"PORT": "80a"})
    with pytest.raises(ImproperlyConfigured, match="PORT=70000 is above the maximum of 65535"):
        env_int("PORT", 1, maximum=65535, environ={"PORT": "70000"})
    with pytest.raises(ImproperlyConfigured, match="PORT=0 is below the minimum of 1"):
        env_int("PORT", 1, minimum=1, environ={"PORT": "0"})


def test_env_float_refuses_nan_and_text() -> None:
    assert env_float("R", 0.5, environ={"R": "0.25"}) == 0.25
    with pytest.raises(ImproperlyConfigured, match="R must be a number, not NaN"):
        env_float("R", 0.5, environ={"R": "nan"})
    with pytest.raises(ImproperlyConfigured, match="R='half' is not a number"):
        env_float("R", 0.5, environ={"R": "half"})
    with pytest.raises(ImproperlyConfigured, match="above the maximum"):
        env_float("R", 0.5, maximum=1.0, environ={"R": "1.5"})


def test_env_list_splits_on_commas_and_drops_blanks() -> None:
    assert env_list("H", environ={"H": "a.example, b.example,,"}) == ["a.example", "b.example"]
    assert env_list("H", ["x"], environ={}) == ["x"]


def test_env_str_and_path_defaults(tmp_path: Path) -> None:
    assert env_str("S", "d", environ={"S": ""}) == "d"
    assert env_path("P", tmp_path, environ={}) == tmp_path
    assert env_path("P", tmp_path, environ={"P": str(tmp_path / "x")}) == tmp_path / "x"


def test_env_choice_lists_the_choices() -> None:
    assert env_choice("C", "a", ("a", "b"), environ={"C": "b"}) == "b"
    with pytest.raises(ImproperlyConfigured, match="C='z' is not one of: a, b"):
        env_choice("C", "a", ("a", "b"), environ={"C": "z"})


def test_env_secret_reads_value_or_file(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert env_secret("K", environ={"K": "direct"}) == "direct"
    assert env_secret("K", environ={"K_FILE": str(secret)}) == "s3cret"
    assert env_secret("K", "fallback", environ={}) == "fallback"


def test_env_secret_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="K \\(or K_FILE\\) must be set in production"):
        env_secret("K", required=True, environ={})
    with pytest.raises(ImproperlyConfigured, match="Set K or K_FILE, not both"):
        env_secret("K", environ={"K": "a", "K_FILE": "/x"})
    with pytest.raises(ImproperlyConfigured, match="K_FILE='/nonexistent/key' cannot be read"):
        env_secret("K", environ={"K_FILE": "/nonexistent/key"})
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ImproperlyConfigured, match="is empty"):
        env_secret("K", environ={"K_FILE": str(empty)})


def test_env_rate_reads_count_per_period_and_names_the_variable() -> None:
    assert env_rate("R", "60/minute", environ={}) == "60/minute"
    assert env_rate("R", "60/minute", environ={"R": " 20/s "}) == "20/s"
    for bad in ("fast", "0/minute", "10/fortnight", "10 per minute", "-1/s"):
        with pytest.raises(ImproperlyConfigured, match=f"R='{bad}' is not a rate"):
            env_rate("R", "60/minute", environ={"R": bad})
