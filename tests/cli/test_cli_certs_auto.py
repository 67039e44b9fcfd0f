"""What `dynos certs:auto` prints for each state of ACM (cli/commands/certs_auto.py), pure."""

from __future__ import annotations

from dynos.cli.commands.certs_auto import format_status, humanize


def test_statuses_read_as_herokus() -> None:
    assert humanize("cert issued") == "Cert Issued"
    assert humanize("failing") == "Failing"
    assert humanize("dns-verified") == "Dns Verified"
    assert humanize(None) == "Waiting"


def test_acm_off() -> None:
    assert format_status("shop", {"acm": False}) == [
        "=== Automatic Certificate Management is disabled on shop"
    ]


def test_an_issued_certificate_and_a_failing_host() -> None:
    status = {
        "acm": True,
        "acm_status": "failing",
        "acm_status_reason": "Validation failed: www.example.com: connection refused",
        "certificate": {
            "cert_domains": ["shop.example.com"],
            "starts_at": "2026-12-01T09:00:00Z",
            "expires_at": "2027-03-01T09:00:00Z",
            "renews_at": "2027-01-30T09:00:00Z",
        },
        "domains": [
            {
                "hostname": "shop.example.com",
                "acm_status": "cert issued",
                "acm_status_reason": None,
                "updated_at": "2026-12-01T09:00:00Z",
            },
            {
                "hostname": "www.example.com",
                "acm_status": "failed",
                "acm_status_reason": "Validation failed: www.example.com: connection refused",
                "updated_at": "2026-12-01T09:05:00Z",
            },
        ],
    }
    assert format_status("shop", status) == [
        "=== Automatic Certificate Management is enabled on shop",
        "",
        "Renewal scheduled for 2027-01-30 09:00 UTC.",
        "",
        "Certificate details:",
        "Common Name(s): shop.example.com",
        "Starts At:      2026-12-01 09:00:00 UTC",
        "Expires At:     2027-03-01 09:00:00 UTC",
        "",
        "Domain            Status       Reason                                                  "
        "Last Updated",
        "shop.example.com  Cert Issued                                                          "
        "2026-12-01 09:00:00 UTC",
        "www.example.com   Failed       Validation failed: www.example.com: connection refused  "
        "2026-12-01 09:05:00 UTC",
        "",
        "Some domains failed validation: retry with 'dynos certs:auto:refresh -a shop'.",
    ]
