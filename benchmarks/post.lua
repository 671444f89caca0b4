-- wrk script: every request is POST {} with a JSON content type.
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
