"""The GitHub provider's pure rules: how long GitHub asks to wait, and what the reviews say."""

from __future__ import annotations

import pytest

from model_lifecycle.gitops.github import Wait, retry_wait, review_verdicts, who

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "headers", "message", "failures", "expected"),
    [
        (403, {"retry-after": "30"}, "secondary rate limit", 1,
         Wait(30.0, "rate limited (403, Retry-After 30 s)")),
        (429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 90)}, "", 1,
         Wait(90.0, "rate limit used up (429), it resets at 2027-01-15T08:01:30+00:00")),
        (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)}, "", 1,
         Wait(1.0, "rate limit used up (403), it resets at 2027-01-15T07:59:55+00:00")),
        (403, {}, "You have exceeded a secondary rate limit", 1,
         Wait(60.0, "secondary rate limit (403: You have exceeded a secondary rate limit)")),
        (429, {}, "", 1, Wait(60.0, "secondary rate limit (429: )")),
        (502, {}, "", 1, Wait(1.0, "server error 502")),
        (503, {}, "", 4, Wait(8.0, "server error 503")),
        (500, {}, "", 30, Wait(60.0, "server error 500")),
        (None, {}, "ConnectionError", 2, Wait(2.0, "no answer (ConnectionError)")),
        (403, {"x-ratelimit-remaining": "12"}, "Resource not accessible by integration", 1, None),
        (404, {}, "Not Found", 1, None),
        (422, {}, "Validation Failed", 1, None),
        (200, {}, "", 1, None),
    ],
)
def test_retry_wait(status: int | None, headers: dict, message: str, failures: int,
                    expected: Wait | None) -> None:
    assert retry_wait(status, headers, message, failures, NOW) == expected


def test_the_latest_verdict_of_each_reviewer_counts() -> None:
    def review(login: str, state: str) -> dict:
        return {"user": {"login": login}, "state": state}

    reviews = [review("alice", "CHANGES_REQUESTED"), review("alice", "APPROVED"), review("bob", "APPROVED"),
               review("bob", "COMMENTED"), review("carol", "APPROVED"), review("carol", "DISMISSED"),
               review("dave", "CHANGES_REQUESTED"), {"user": None, "state": "APPROVED"}]
    verdicts = review_verdicts(reviews)
    assert who(verdicts, "APPROVED") == ("alice", "bob")
    assert who(verdicts, "CHANGES_REQUESTED") == ("dave",)
