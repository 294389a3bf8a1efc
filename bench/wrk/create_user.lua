-- POST a new user (a new username each time) to the path of the URL wrk was given, so the
-- same script loads the product's /users/ and the baseline's /outbox/users/ alike.
-- Threads seed their own random numbers.
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  local name = string.format("wrk%d%d", math.random(1, 1e9), math.random(1, 1e9))
  local body = string.format('{"username": "%s", "email": "%s@example.com"}', name, name)
  -- nil headers: wrk's own, which hold the -H headers (Authorization) and this one.
  wrk.headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, nil, body)  -- nil path: wrk.path, from the URL
end
