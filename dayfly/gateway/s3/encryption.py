"""Server-side encryption requests are refused, never acknowledged: dayfly stores objects as
they arrive (docs/security.md), so any request that asks S3 to encrypt (SSE-S3, SSE-KMS,
DSSE-KMS) or to use a customer's key (SSE-C, also for a copy's source) gets S3's error for
a value it does not know (400) or for functionality not implemented (501), before any byte
is stored or served. The same names in a presigned URL's query count as headers, as in S3.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...stores.s3errors import S3Error

SSE = "x-amz-server-side-encryption"
SSE_C = "x-amz-server-side-encryption-customer-"
COPY_SSE_C = "x-amz-copy-source-server-side-encryption-customer-"
KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
METHODS = ("AES256", "aws:kms", "aws:kms:dsse")  # the values S3 knows

NOT_STORED_ENCRYPTED = ("dayfly stores objects unencrypted (the data dir is its owner's only; "
                        "see docs/security.md)")


def check(headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]]) -> None:
    """Raise S3's error if the request asks for server-side encryption in any form."""
    asked = {name.lower(): value for name, value in (*query, *headers)
             if name.lower().startswith((SSE, COPY_SSE_C))}
    if not asked:
        return
    for prefix, what in ((SSE_C, "with customer-provided keys (SSE-C)"),
                         (COPY_SSE_C, "of the copy source with customer-provided keys (SSE-C)")):
        algorithm = asked.get(prefix + "algorithm")
        if algorithm is not None and algorithm != "AES256":
            raise S3Error("InvalidEncryptionAlgorithmError", "The encryption request you "
                          "specified is not valid. The valid value is AES256.",
                          ArgumentName=prefix + "algorithm", ArgumentValue=algorithm[:64])
        if any(name.startswith(prefix) for name in asked):
            raise S3Error("NotImplemented", f"Server-side encryption {what} is not implemented: "
                          f"{NOT_STORED_ENCRYPTED}, and would not keep the object from readers "
                          "without the key.")
    method = asked.get(SSE)
    if method is not None and method not in METHODS:
        raise S3Error("InvalidArgument", "The encryption method specified is not supported",
                      ArgumentName=SSE, ArgumentValue=method[:64])
    if KMS_KEY in asked and method not in ("aws:kms", "aws:kms:dsse"):
        raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key "
                      f"requires HTTP header {SSE} : aws:kms", ArgumentName=KMS_KEY)
    name = SSE if method is not None else sorted(asked)[0]
    raise S3Error("NotImplemented", f"Server-side encryption ({name}: "
                  f"{asked[name][:64]}) is not implemented: {NOT_STORED_ENCRYPTED}.")
