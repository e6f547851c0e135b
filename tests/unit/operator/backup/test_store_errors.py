"""Store settings (credentials never shown, prefixes, the client's configuration for
S3-compatible servers) and the mapping of botocore's errors to typed, one-line errors."""

from __future__ import annotations

import botocore.exceptions
import pytest
from etcd_operator.api.backup import BackupStore, SecretKeyRef, ServerSideEncryption
from etcd_operator.backup.errors import (
    AccessDeniedError,
    BackupError,
    InvalidCredentialsError,
    NoSuchBucketError,
    NoSuchKeyError,
    StoreError,
    StoreUnreachableError,
    classify_s3_error,
)
from etcd_operator.backup.store import (
    Credentials,
    StoreSettings,
    client_config,
    make_client,
)

from tests.unit.operator.backup.fake_s3 import client_error

CREDS = Credentials("AKIDEXAMPLE1234", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "tok3n-xyz")


def test_credentials_never_shown() -> None:
    settings = StoreSettings(bucket="b", credentials=CREDS, endpoint="http://127.0.0.1:9000")
    for text in (repr(CREDS), str(CREDS), repr(settings), str(settings)):
        for secret in CREDS.secrets():
            assert secret not in text
    assert "<redacted>" in repr(settings)
    assert settings.redact(f"x {CREDS.secret_access_key} y") == "x <redacted> y"


def test_endpoint_with_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="must not hold credentials"):
        StoreSettings(bucket="b", endpoint="http://user:pass@s3.local")


def test_prefix_and_keys() -> None:
    assert StoreSettings(bucket="b", prefix="/ns/demo").key_for("x") == "ns/demo/x"
    assert StoreSettings(bucket="b", prefix="ns/demo/").prefix == "ns/demo/"
    assert StoreSettings(bucket="b").key_for("x") == "x"
    assert StoreSettings(bucket="b").location("ns/x") == "s3://b/ns/x"


def test_from_api() -> None:
    api = BackupStore(
        bucket="backups",
        endpoint="https://s3.example.com:9000",
        region="eu-west-1",
        forcePathStyle=True,
        credentialsSecret="s3-creds",
        caBundle=SecretKeyRef(name="ca", key="ca.crt"),
        serverSideEncryption=ServerSideEncryption(algorithm="aws:kms", kmsKeyId="alias/etcd"),
    )
    with pytest.raises(ValueError, match="credentials Secret 's3-creds'"):
        StoreSettings.from_api(api, default_prefix="ns/demo/")
    settings = StoreSettings.from_api(
        api, default_prefix="ns/demo/", credentials=CREDS, ca_bundle="/etc/ca.pem"
    )
    assert settings.prefix == "ns/demo/"
    assert settings.force_path_style and settings.region == "eu-west-1"
    assert settings.sse_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/etcd"}
    assert settings.display_endpoint == "https://s3.example.com:9000"
    assert StoreSettings(bucket="b").display_endpoint == "AWS S3 (us-east-1)"


def test_kms_key_needs_aws_kms() -> None:
    sse = ServerSideEncryption(algorithm="AES256", kmsKeyId="k")
    with pytest.raises(ValueError, match="aws:kms"):
        StoreSettings(bucket="b", server_side_encryption=sse)


def test_client_configuration_for_s3_compatible_servers() -> None:
    settings = StoreSettings(
        bucket="b", endpoint="http://127.0.0.1:9000", force_path_style=True, credentials=CREDS
    )
    config = client_config(settings)
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.s3 == {"addressing_style": "path"}
    assert config.signature_version == "s3v4"
    client = make_client(settings)
    assert client.meta.endpoint_url == "http://127.0.0.1:9000"  # type: ignore[attr-defined]
    assert client.meta.region_name == "us-east-1"  # type: ignore[attr-defined]


def classify(err: BaseException) -> BackupError:
    return classify_s3_error(
        err, endpoint="http://127.0.0.1:9000", bucket="b", key="ns/k", operation="upload"
    )


@pytest.mark.parametrize(
    ("code", "status", "error", "text"),
    [
        ("InvalidAccessKeyId", 403, InvalidCredentialsError, "rejected the credentials"),
        ("SignatureDoesNotMatch", 403, InvalidCredentialsError, "secretAccessKey"),
        ("ExpiredToken", 400, InvalidCredentialsError, "rejected the credentials"),
        ("AccessDenied", 403, AccessDeniedError, "allow the credentials s3:PutObject"),
        ("", 403, AccessDeniedError, "HTTP 403"),
        ("NoSuchBucket", 404, NoSuchBucketError, "bucket 'b' does not exist"),
        ("NoSuchKey", 404, NoSuchKeyError, "s3://b/ns/k does not exist"),
        ("PermanentRedirect", 301, StoreError, "set the store's region"),
        ("ObjectParentIsFile", 409, StoreError, "collides with an existing object or key prefix"),
        ("ExistingObjectIsDirectory", 409, StoreError, "give the store a prefix of its own"),
        ("InternalError", 500, StoreError, "failed: InternalError"),
    ],
)
def test_client_errors(code: str, status: int, error: type[BackupError], text: str) -> None:
    got = classify(client_error(code, "UploadPart", status))
    assert type(got) is error
    assert text in str(got)
    assert "\n" not in str(got)
    assert got.reason


def test_connection_errors_are_unreachable() -> None:
    for err in (
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ConnectTimeoutError(endpoint_url="http://127.0.0.1:1"),
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
    ):
        got = classify(err)
        assert isinstance(got, StoreUnreachableError)
        assert "http://127.0.0.1:9000 is unreachable" in str(got)


def test_missing_credentials() -> None:
    got = classify(botocore.exceptions.NoCredentialsError())
    assert isinstance(got, InvalidCredentialsError)
    assert "no usable S3 credentials" in str(got)
