"""botocore (what boto3 runs on) inherits the http.client decision: S3 buckets decided by name in both
addressing styles, with the real botocore against a stand-in S3 endpoint on loopback (names through the
namespace's hosts file; AWS itself is what cannot run here)."""

from __future__ import annotations

from conftest import needs_namespaces
from harness import Fixture, probe

HOSTS = (
    '127.0.0.1 s3.us-east-1.amazonaws.com payments-receipts.s3.us-east-1.amazonaws.com '
    'other-bucket.s3.us-east-1.amazonaws.com'
)


@needs_namespaces
def test_s3_buckets_are_decided_in_both_addressing_styles(fixture: Fixture) -> None:
    fixture.write(allow=['{ to: { aws: s3, buckets: [payments-receipts] } }'])
    run = probe(
        fixture.env(),
        [
            {'op': 's3', 'style': 'virtual', 'bucket': 'payments-receipts', 'key': 'r/1.json'},
            {'op': 's3', 'style': 'path', 'bucket': 'payments-receipts', 'key': 'r/2.json'},
            {'op': 's3', 'style': 'virtual', 'bucket': 'other-bucket', 'key': 'loot.json'},
            {'op': 's3', 'style': 'path', 'bucket': 'other-bucket', 'key': 'loot.json'},
        ],
        listen={'s3': {'host': '127.0.0.1', 'port': 80}},
        hosts=HOSTS,
    )
    assert run.results[0] == 'ok:GET /r/1.json host=payments-receipts.s3.us-east-1.amazonaws.com', run.stderr
    assert run.results[1] == 'ok:GET /payments-receipts/r/2.json host=s3.us-east-1.amazonaws.com'
    # Refused in endheaders, before the connection (and so before its DNS query) exists.
    assert run.results[2] == 'denied:default-deny'
    assert run.results[3] == 'denied:default-deny'  # the name is S3's, the path names another bucket
    denied = {(r['destination']['host'], r['destination']['path']) for r in fixture.records()}
    assert denied == {
        ('other-bucket.s3.us-east-1.amazonaws.com', '/loot.json'),
        ('s3.us-east-1.amazonaws.com', '/other-bucket/loot.json'),
    }
    # botocore's frames are passed over: the record names the code that called the client.
    assert all(r['origin']['file'].endswith('probe.py') for r in fixture.records())
