"""`evalharness doctor`: a failed check is exit 1, and an endpoint URL's credentials never reach the output."""

from __future__ import annotations

import socket

from tests.reliability.helpers import invoke


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_an_endpoint_that_does_not_answer_fails_the_doctor_with_exit_1(tmp_path):
    result = invoke(["doctor", "--base-url", f"http://127.0.0.1:{_closed_port()}/v1", "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 1
    line = next(x for x in result.output.splitlines() if "judge endpoint" in x)
    assert line.startswith("FAIL") and "does not answer" in line


def test_credentials_in_the_endpoint_url_are_refused_and_never_printed(tmp_path):
    secret = "hunter2-doctor-7c1"
    result = invoke(["doctor", "--base-url", f"http://user:{secret}@127.0.0.1:{_closed_port()}/v1",
                     "--store", "s.duckdb"], tmp_path)
    assert result.exit_code == 1
    assert secret not in result.output
    line = next(x for x in result.output.splitlines() if "judge endpoint" in x)
    assert line.startswith("FAIL") and "OPENAI_API_KEY" in line
