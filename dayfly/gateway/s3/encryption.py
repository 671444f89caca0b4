"""Server-side encryption as S3 asks for it in headers (or a presigned URL's query, which S3
treats alike): SSE-S3 (`x-amz-server-side-encryption: AES256`) and SSE-C (the customer's key in
`x-amz-server-side-encryption-customer-*`) on PutObject, and SSE-C's key on GetObject,
HeadObject and GetObjectAttributes; stores/sse.py does the encrypting. Everything else that
names encryption is refused before any byte is stored or served, never acknowledged: SSE-KMS
and DSSE-KMS, SSE on multipart uploads, SSE-C on copies (either side). A copy of an SSE-S3
object stays so; a copy of a plain one asking for SSE-S3 is written encrypted (objects.py).
"""

from __future__ import annotations

from collections.abc import Iterable

from ...stores.s3errors import S3Error
from ...stores.sse import Sse, customer_key

SSE = "x-amz-server-side-encryption"
SSE_C = "x-amz-server-side-encryption-customer-"
COPY_SSE_C = "x-amz-copy-source-server-side-encryption-customer-"
KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
METHODS = ("AES256", "aws:kms", "aws:kms:dsse")  # the values S3 knows
ENCRYPTING = ("put_object",)  # operations that may store an encrypted object
READING = ("get_object", "head_object", "get_attributes")  # ... that may be given SSE-C's key


def named(name: str) -> bool:
    """Whether a header or query name is about server-side encryption."""
    return name.lower().startswith((SSE, COPY_SSE_C))


def _asked(headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]]
           ) -> dict[str, str]:
    return {name.lower(): value for name, value in (*query, *headers) if named(name)}


def _not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"Server-side encryption {what} is not implemented.")


def check(headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]],
          operation: str, copy: bool) -> None:
    """Raise S3's error if the request asks for encryption `operation` cannot do."""
    asked = _asked(headers, query)
    if not asked:
        return
    for prefix in (SSE_C, COPY_SSE_C):
        algorithm = asked.get(prefix + "algorithm")
        if algorithm is not None and algorithm != "AES256":
            raise S3Error("InvalidEncryptionAlgorithmError", "The encryption request you "
                          "specified is not valid. The valid value is AES256.",
                          ArgumentName=prefix + "algorithm", ArgumentValue=algorithm[:64])
    method = asked.get(SSE)
    if method is not None and method not in METHODS:
        raise S3Error("InvalidArgument", "The encryption method specified is not supported",
                      ArgumentName=SSE, ArgumentValue=method[:64])
    if KMS_KEY in asked and method not in ("aws:kms", "aws:kms:dsse"):
        raise S3Error("InvalidArgument", "Server Side Encryption with AWS KMS managed key "
                      f"requires HTTP header {SSE} : aws:kms", ArgumentName=KMS_KEY)
    if method in ("aws:kms", "aws:kms:dsse") or any(
            n.startswith((SSE + "-aws-kms", SSE + "-context", SSE + "-bucket-key"))
            for n in asked):
        raise _not_implemented(f"with AWS KMS ({SSE}: {str(method)[:20]})")
    if any(n.startswith(COPY_SSE_C) for n in asked):
        raise _not_implemented("of a copy source with a customer-provided key (SSE-C)")
    customer = any(n.startswith(SSE_C) for n in asked)
    if operation in READING:
        if method is not None:
            raise S3Error("InvalidArgument", f"{SSE} is not allowed on a read",
                          ArgumentName=SSE)
        return
    if operation not in ENCRYPTING:
        raise _not_implemented(f"on this operation ({operation})")
    if copy and customer:
        raise _not_implemented("of a copy with a customer-provided key (SSE-C)")
    if customer and method is not None:
        raise S3Error("InvalidArgument", "Server Side Encryption with Customer provided key is "
                      "incompatible with the encryption method specified", ArgumentName=SSE)


def requested(headers: Iterable[tuple[str, str]], query: Iterable[tuple[str, str]]
              ) -> Sse | None:
    """The encryption a request asks for (SSE-S3, with an empty key: the node's), or SSE-C's
    key it gives for a read; None if neither."""
    asked = _asked(headers, query)
    if asked.get(SSE) == "AES256":
        return Sse("AES256", b"")
    if any(n.startswith(SSE_C) for n in asked):
        if SSE_C + "algorithm" not in asked or SSE_C + "key" not in asked:
            raise S3Error("InvalidRequest", "Requests specifying Server Side Encryption with "
                          "Customer provided keys must provide an appropriate secret key and "
                          "algorithm.")
        return customer_key(asked[SSE_C + "key"], asked.get(SSE_C + "key-md5"), SSE_C)
    return None
