"""The webhook target policy's form checks, the retry schedule, and the ALERT_* configuration."""

from __future__ import annotations

import ipaddress

import pytest

from ingest_service.alerts.config import AlertSettings
from ingest_service.alerts.sender import DeliverySettings, backoff_seconds
from ingest_service.alerts.targets import TargetPolicy, TargetRefused
from service_common.config import ConfigError


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://hooks.example.com/x", "must use https"),
        ("ftp://hooks.example.com/x", "must use https"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https:///x", "no host"),
        ("https://hooks.example.com:99999/x", "not a URL"),
        ("https://10.1.2.3/x", "private"),
        ("https://192.168.0.1/x", "private"),
        ("https://172.16.0.1/x", "private"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://[::1]/x", "loopback"),
        ("https://169.254.169.254/x", "link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://[::ffff:10.0.0.1]/x", "private"),
        ("https://100.64.0.1/x", "not a public address"),
        ("https://224.0.0.1/x", "not a public address"),
        ("https://0.0.0.0/x", "not a public address"),
    ],
)
def test_refused_urls(url: str, problem: str) -> None:
    with pytest.raises(TargetRefused, match=problem):
        TargetPolicy().check_url(url)


def test_public_urls_and_allowed_networks_pass() -> None:
    target = TargetPolicy().check_url("https://hooks.example.com/alerts?x=1")
    assert (target.host, target.port) == ("hooks.example.com", 443)
    assert TargetPolicy().check_url("https://93.184.215.14:8443/x").port == 8443
    allowed = TargetPolicy.parse(["10.1.2.0/24", "::1"])
    allowed.check_url("https://10.1.2.7/x")
    allowed.check_url("https://[::1]/x")
    with pytest.raises(TargetRefused):
        allowed.check_url("https://10.1.3.7/x")
    allowed.check_address(ipaddress.ip_address("10.1.2.200"))


def test_retries_span_at_least_a_day_with_jittered_exponential_delays() -> None:
    settings = DeliverySettings()
    assert settings.give_up_after_seconds >= 86_400
    # Jitter keeps each delay between the half and the whole of its exponential ceiling.
    assert backoff_seconds(1, settings, lambda: 0.0) == 2.5
    assert backoff_seconds(1, settings, lambda: 0.999999) == pytest.approx(5.0, abs=1e-4)
    assert backoff_seconds(3, settings, lambda: 0.0) == 10.0
    assert backoff_seconds(40, settings, lambda: 0.999999) == pytest.approx(3600.0, abs=0.01)
    # The longest schedule (every draw at its largest) still retries past 24 hours before the horizon.
    elapsed, attempts = 0.0, 1
    while elapsed + backoff_seconds(attempts, settings, lambda: 0.999999) < settings.give_up_after_seconds:
        elapsed += backoff_seconds(attempts, settings, lambda: 0.999999)
        attempts += 1
    assert elapsed >= 86_400
    assert 30 <= attempts <= 40


def test_alert_settings_from_the_environment() -> None:
    settings = AlertSettings.from_env({"ALERT_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, 10.0.0.0/8"})
    assert [str(each) for each in settings.policy.allowed_networks] == ["127.0.0.0/8", "10.0.0.0/8"]
    assert AlertSettings.from_env({}) == AlertSettings()
    with pytest.raises(ConfigError, match="ALERT_WEBHOOK_ALLOWED_NETWORKS"):
        AlertSettings.from_env({"ALERT_WEBHOOK_ALLOWED_NETWORKS": "not-a-network"})
    with pytest.raises(ConfigError, match="ALERT_DELIVERY_LEASE_SECONDS"):
        AlertSettings.from_env({"ALERT_DELIVERY_LEASE_SECONDS": "5", "ALERT_DELIVERY_TIMEOUT_SECONDS": "10"})
    with pytest.raises(ConfigError, match="ALERT_DELIVERY_GIVE_UP_SECONDS"):
        AlertSettings.from_env({"ALERT_DELIVERY_GIVE_UP_SECONDS": "3600"})
    with pytest.raises(ConfigError, match="ALERT_WEBHOOK_CA_FILE"):
        AlertSettings.from_env({"ALERT_WEBHOOK_CA_FILE": "/nonexistent/ca.pem"})
