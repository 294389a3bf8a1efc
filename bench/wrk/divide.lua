-- POST /tasks/divide {"x": 1, "y": 2}
wrk.method = "POST"
wrk.body = '{"x": 1, "y": 2}'
wrk.headers["Content-Type"] = "application/json"
