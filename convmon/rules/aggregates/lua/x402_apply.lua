-- Apply one payment.x402 event to the x402 aggregates, once.
-- KEYS: 1 applied marker, 2 totals hash, 3 last-seen hash, then for each granularity
--       (fine, coarse) its bucket hash, payers HyperLogLog and payees HyperLogLog
--       (KEYS 4..6 and 7..9), 10 token -> track hash. Every key shares the aggregates'
--       hash tag.
-- ARGV: 1 marker TTL, 2 fine TTL, 3 coarse TTL, 4 series "<chain>|<facilitator>",
--       5 token, 6 amount in micro-units (integer), 7 payer, 8 payee, 9 time, 10 track.
-- Returns 1 when applied, 0 when the event was applied before.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local series, token, micro = ARGV[4], ARGV[5], ARGV[6]
redis.call('HSET', KEYS[10], token, ARGV[10])
redis.call('HINCRBY', KEYS[2], series .. '|n', 1)
redis.call('HINCRBY', KEYS[2], series .. '|v|' .. token, micro)
local last = tonumber(redis.call('HGET', KEYS[3], series) or '0')
if tonumber(ARGV[9]) > last then
  redis.call('HSET', KEYS[3], series, ARGV[9])
end
for g = 0, 1 do
  local bucket, payers, payees = KEYS[4 + 3 * g], KEYS[5 + 3 * g], KEYS[6 + 3 * g]
  local ttl = ARGV[2 + g]
  redis.call('HINCRBY', bucket, 'n', 1)
  redis.call('HINCRBY', bucket, 'v|' .. token, micro)
  redis.call('PFADD', payers, ARGV[7])
  redis.call('PFADD', payees, ARGV[8])
  redis.call('EXPIRE', bucket, ttl)
  redis.call('EXPIRE', payers, ttl)
  redis.call('EXPIRE', payees, ttl)
end
return 1
