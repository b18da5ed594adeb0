"""What a refused ``syncclass serve`` option must look like: exit 2, usage and the reason."""

from __future__ import annotations

import pytest

from syncclass.config import parse_serve_args


def expect_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        parse_serve_args(argv, environ)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err
    assert message in err
