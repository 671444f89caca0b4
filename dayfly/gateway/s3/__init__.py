"""The S3-compatible endpoint: SigV4 checks, aws-chunked bodies, S3's XML, the operations."""
