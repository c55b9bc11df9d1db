-- Sum one x402 series over one window: its bucket hashes and the union of its payer and
-- payee HyperLogLogs.
-- KEYS: the window's N bucket hashes, then its N payer HLLs, then its N payee HLLs.
-- ARGV: 1 N. Returns {count, {token, micro-units, ...}, unique payers, unique payees}.
local n = tonumber(ARGV[1])
local count = 0
local volume = {}
for i = 1, n do
  local flat = redis.call('HGETALL', KEYS[i])
  for k = 1, #flat, 2 do
    local field, value = flat[k], tonumber(flat[k + 1])
    if field == 'n' then
      count = count + value
    else
      local token = string.sub(field, 3)
      volume[token] = (volume[token] or 0) + value
    end
  end
end
local payers, payees = {}, {}
for i = 1, n do
  payers[i] = KEYS[n + i]
  payees[i] = KEYS[2 * n + i]
end
local flat_volume = {}
for token, value in pairs(volume) do
  flat_volume[#flat_volume + 1] = token
  flat_volume[#flat_volume + 1] = string.format('%.0f', value)
end
return {count, flat_volume, redis.call('PFCOUNT', unpack(payers)),
        redis.call('PFCOUNT', unpack(payees))}
