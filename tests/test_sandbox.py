"""The sandbox is a faithful VastCap API: the documented answers, spending, faults and its call log."""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from core_keys import DISABLED_KEY, KEY

from vastcap_guard.sandbox import DEFAULT_KEY, Sandbox


def post(sb: Sandbox, method: str, **body: object) -> dict[str, object]:
    r = requests.post(f"{sb.url}/{method}", json=body, timeout=5)
    assert r.headers["Content-Type"] == "application/json"
    return r.json()  # type: ignore[no-any-return]


def test_get_balance_as_documented(sandbox: Sandbox) -> None:
    assert post(sandbox, "getBalance", clientKey=KEY) == {"balance": 10.25}
    assert post(sandbox, "getBalance", clientKey="nope")["error"] == {
        "errorId": 1, "errorCode": "ERROR_KEY_DOES_NOT_EXIST", "errorDescription": "Invalid API key",
    }
    assert post(sandbox, "getBalance", clientKey=DISABLED_KEY)["error"]["errorCode"] == "ERROR_ACCOUNT_DISABLED"  # type: ignore[index]


def test_solving_debits_the_price(sandbox: Sandbox) -> None:
    task = {"type": "RecaptchaV2TaskProxyless", "websiteURL": "http://127.0.0.1/", "websiteKey": "k"}
    for _ in range(5):
        task_id = post(sandbox, "createTask", clientKey=KEY, task=task)["taskId"]
        result = post(sandbox, "getTaskResult", clientKey=KEY, taskId=task_id)
        assert result["status"] == "ready" and "gRecaptchaResponse" in result["solution"]  # type: ignore[operator]
        again = post(sandbox, "getTaskResult", clientKey=KEY, taskId=task_id)  # asking again costs nothing
        assert again == result  # and answers the same solution
    assert sandbox.balance(KEY) == Decimal("10.25") - 5 * Decimal("0.002")


def test_processing_until_solved() -> None:
    with Sandbox({KEY: "1"}, solve_delay=30) as sb:
        task_id = post(sb, "createTask", clientKey=KEY, task={"type": "TurnstileTaskProxyless"})["taskId"]
        assert post(sb, "getTaskResult", clientKey=KEY, taskId=task_id) == {"status": "processing"}
        assert sb.balance(KEY) == Decimal(1)


def test_insufficient_balance_refuses_tasks(sandbox: Sandbox) -> None:
    sandbox.set_balance(KEY, "0.001")
    out = post(sandbox, "createTask", clientKey=KEY, task={"type": "ImageToTextTask"})
    assert out["error"]["errorCode"] == "ERROR_INSUFFICIENT_BALANCE"  # type: ignore[index]


@pytest.mark.parametrize("task_id", ["x", None, 7, ["x"], {"id": "x"}])
def test_unknown_task(sandbox: Sandbox, task_id: object) -> None:
    assert post(sandbox, "getTaskResult", clientKey=KEY, taskId=task_id)["error"]["errorCode"] == "ERROR_TASK_NOT_FOUND"  # type: ignore[index]


def test_faults_times_and_every(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "status", status=500, every=2)
    codes = [requests.post(f"{sandbox.url}/getBalance", json={"clientKey": KEY}, timeout=5).status_code for _ in range(6)]
    assert codes == [500, 200, 500, 200, 500, 200]
    sandbox.clear_faults()
    sandbox.fault("getBalance", "html", times=1)
    first = requests.post(f"{sandbox.url}/getBalance", json={"clientKey": KEY}, timeout=5)
    assert first.status_code == 502 and first.text.startswith("<!DOCTYPE html>")
    assert requests.post(f"{sandbox.url}/getBalance", json={"clientKey": KEY}, timeout=5).status_code == 200


def test_drop_closes_without_answer(sandbox: Sandbox) -> None:
    sandbox.fault("getBalance", "drop")
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{sandbox.url}/getBalance", json={"clientKey": KEY}, timeout=5)


def test_call_log_masks_keys(sandbox: Sandbox) -> None:
    post(sandbox, "getBalance", clientKey=KEY)
    calls = sandbox.calls("getBalance")
    assert len(calls) == 1 and KEY not in repr(calls)
    assert sandbox.call_count("createTask") == 0


def test_control_api_for_other_processes(sandbox: Sandbox) -> None:
    base = sandbox.base_url + "/_sandbox"
    requests.post(f"{base}/account", json={"clientKey": KEY, "balance": "0"}, timeout=5).raise_for_status()
    assert sandbox.balance(KEY) == 0
    requests.post(f"{base}/fault", json={"method": "getBalance", "kind": "status", "status": 503}, timeout=5).raise_for_status()
    assert requests.post(f"{sandbox.url}/getBalance", json={"clientKey": KEY}, timeout=5).status_code == 503
    requests.post(f"{base}/clear_faults", json={}, timeout=5).raise_for_status()
    assert len(requests.get(f"{base}/calls", timeout=5).json()) == 1  # control calls are not logged
    assert requests.post(f"{base}/fault", json={"method": "nope", "kind": "drop"}, timeout=5).status_code == 400


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        Sandbox(host="0.0.0.0")


def test_default_account() -> None:
    with Sandbox() as sb:
        assert sb.key == DEFAULT_KEY and sb.balance(DEFAULT_KEY) == 10


def test_wrong_path_is_404(sandbox: Sandbox) -> None:
    assert requests.post(f"{sandbox.base_url}/getBalance", json={"clientKey": KEY}, timeout=5).status_code == 404


pytest_plugins = ["pytester"]


def test_pytest_fixture_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from decimal import Decimal
        from vastcap_guard import BalanceClient

        def test_it(vastcap_sandbox):
            assert BalanceClient(vastcap_sandbox.key, api_url=vastcap_sandbox.url).get_balance() == Decimal(10)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:twisted")
    result.assert_outcomes(passed=1)


def test_a_stopped_sandbox_answers_nothing_even_on_kept_alive_connections() -> None:
    session = requests.Session()
    sb = Sandbox().start()
    url = sb.url
    assert session.post(f"{url}/getBalance", json={"clientKey": sb.key}, timeout=5).status_code == 200
    sb.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(f"{url}/getBalance", json={"clientKey": sb.key}, timeout=5)


def test_ipv6_loopback_is_served() -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    with Sandbox({KEY: "1"}, host="::1") as sb:
        assert sb.url.startswith("http://[::1]:")
        assert post(sb, "getBalance", clientKey=KEY) == {"balance": 1.0}


def test_the_documented_contract_of_spending() -> None:
    """docs/sandbox.md: createTask debits and reserves nothing; the first ready getTaskResult pays,
    at the price of that moment; short of money it answers an error and can be paid after a top-up."""
    other = "vc_OTHERKEY_s3cr3t_0a1b2c3d4e"
    with Sandbox({KEY: "0.002", other: "1"}, price="0.002") as sb:
        a = post(sb, "createTask", clientKey=KEY, task={"type": "RecaptchaV2TaskProxyless"})["taskId"]
        b = post(sb, "createTask", clientKey=KEY, task={"type": "ImageToTextTask"})["taskId"]  # nothing reserved
        assert sb.balance(KEY) == Decimal("0.002")  # a balance equal to the price is enough; no debit yet
        assert post(sb, "getTaskResult", clientKey=other, taskId=a)["error"]["errorCode"] == "ERROR_TASK_NOT_FOUND"  # type: ignore[index]

        assert post(sb, "getTaskResult", clientKey=KEY, taskId=a)["status"] == "ready"
        assert sb.balance(KEY) == 0
        short = post(sb, "getTaskResult", clientKey=KEY, taskId=b)
        assert short["status"] == "error" and short["error"]["errorCode"] == "ERROR_INSUFFICIENT_BALANCE"  # type: ignore[index]
        assert sb.balance(KEY) == 0
        refused = post(sb, "createTask", clientKey=KEY, task={"type": "ImageToTextTask"})
        assert refused["error"]["errorCode"] == "ERROR_INSUFFICIENT_BALANCE"  # type: ignore[index]

        sb.set_balance(KEY, "1")
        sb.price = Decimal("0.01")  # the price of the moment the result is collected
        paid = post(sb, "getTaskResult", clientKey=KEY, taskId=b)
        assert paid["status"] == "ready" and len(paid["solution"]["text"]) == 6  # type: ignore[index]
        assert sb.balance(KEY) == Decimal("0.99")
        turnstile = post(sb, "createTask", clientKey=KEY, task={"type": "TurnstileTaskProxyless"})["taskId"]
        assert post(sb, "getTaskResult", clientKey=KEY, taskId=turnstile)["solution"]["token"].startswith("P1_")  # type: ignore[index]
        assert sb.balance(KEY) == Decimal("0.98")


def test_top_up_adds_to_the_balance_in_one_step() -> None:
    with Sandbox({"vc_topup_key_0000000001": "0.5"}) as sb:
        assert sb.top_up("vc_topup_key_0000000001", "1.25") == Decimal("1.75")
        assert sb.balance("vc_topup_key_0000000001") == Decimal("1.75")
        assert sb.top_up("vc_new_key_000000000002", 2) == Decimal(2)  # a new account starts at 0
