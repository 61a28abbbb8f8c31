-- The quota ledger on Redis (quota/redis.py): every operation is one call of this script, so
-- each admission is atomic and one round trip. It makes the decisions of quota/local.py, rule
-- for rule (tests/test_quota_ledger.py runs both on the same operations and compares answers).
--
-- ARGV[1] names the operation, ARGV[2] is the key prefix of one quota identity (hash-tagged:
-- "scriptgen_nb:{<digest>}:", so a Redis Cluster keeps a quota's keys in one slot; KEYS[1], its
-- "ids", tells a cluster client where to send the script). Keys:
--   ids                slot ids (INCR: never given again while the quota's keys live)
--   slot               hash: slot id -> model .. "\n" .. member
--   at:<model>         sorted set: member (id, tokens, owner, process, day) scored by its time
--   days:<model>       hash: Google day (its start) -> requests counted in it
--   contender:<model>  hash: owner -> until, waiting, process
--   models             set of the models asked about (counting other processes)
--   news, version      hash: kind .. "\n" .. model -> value, source, version, at; its counter
-- Times are the client's wall clock, passed in as exact decimal doubles and handed back as
-- text too (Redis would truncate a Lua number to an integer reply; tostring keeps 14 digits). Every key expires: the slots' a day window after
-- the last admission, the news a week (NEWS_KEPT) after; a dead process's data ages out.

local op, prefix = ARGV[1], ARGV[2]
local SEP = "\t"

local function num(text)
  return tonumber(text)
end

local function fmt(x)
  return string.format("%.17g", x)
end

local function split(text, sep, n)
  local parts, from = {}, 1
  for _ = 1, n - 1 do
    local at = string.find(text, sep, from, true)
    parts[#parts + 1] = string.sub(text, from, at - 1)
    from = at + #sep
  end
  parts[#parts + 1] = string.sub(text, from)
  return parts
end

-- A slot in at:<model>: its fields, and its member written back from them.
local function slot_of(member, at)
  local f = split(member, SEP, 5)
  return { id = f[1], tokens = num(f[2]), owner = f[3], process = f[4], day = f[5], at = at }
end

local function member_of(s)
  return table.concat({ s.id, string.format("%d", s.tokens), s.owner, s.process, s.day }, SEP)
end

-- Lengthen (never shorten) a key's time to live: keys of one quota serve every model.
local function keep(key, seconds)
  local ttl = redis.call("TTL", key)
  if ttl ~= -2 and ttl < seconds then
    redis.call("EXPIRE", key, string.format("%d", seconds))
  end
end

-- The slots of `model` after `since` (exclusive), oldest first.
local function slots_after(model, since)
  local raw = redis.call("ZRANGEBYSCORE", prefix .. "at:" .. model, "(" .. fmt(since), "+inf", "WITHSCORES")
  local slots = {}
  for i = 1, #raw, 2 do
    slots[#slots + 1] = slot_of(raw[i], num(raw[i + 1]))
  end
  return slots
end

-- Write settled slots: ARGV[from..] holds (id, at, tokens) triples (local.py `_write_settled`).
local function write_settled(from)
  for i = from, #ARGV, 3 do
    local row = redis.call("HGET", prefix .. "slot", ARGV[i])
    if row then
      local model, member = unpack(split(row, "\n", 2))
      local key = prefix .. "at:" .. model
      local old = redis.call("ZSCORE", key, member)
      if old then
        local s = slot_of(member, num(old))
        s.tokens = num(ARGV[i + 2])
        local at = math.max(s.at, num(ARGV[i + 1]))
        local new = member_of(s)
        redis.call("ZREM", key, member)
        redis.call("ZADD", key, fmt(at), new)
        redis.call("HSET", prefix .. "slot", s.id, model .. "\n" .. new)
      end
    end
  end
end

local function news_rows()
  local raw = redis.call("HGETALL", prefix .. "news")
  local rows = {}
  for i = 1, #raw, 2 do
    local kind, model = unpack(split(raw[i], "\n", 2))
    local f = split(raw[i + 1], SEP, 4)
    rows[#rows + 1] = {
      model = model, kind = kind, value = num(f[1]), source = f[2], version = num(f[3]), at = num(f[4]),
    }
  end
  return rows
end

local function hold_of(model)
  local row = redis.call("HGET", prefix .. "news", "hold\n" .. model)
  if not row then
    return nil
  end
  return num(split(row, SEP, 4)[1])
end

-- What was learned since version `seen` (holds already over are not news): flat items, and the
-- newest version among the rows read.
local function news_since(seen, now, kept_s)
  local rows = {}
  for _, row in ipairs(news_rows()) do
    if row.version > seen and row.at > now - kept_s then
      rows[#rows + 1] = row
    end
  end
  table.sort(rows, function(a, b) return a.version < b.version end)
  local items, newest = {}, seen
  for _, row in ipairs(rows) do
    if (row.kind == "hold" and row.value > now) or row.kind ~= "hold" then
      for _, v in ipairs({ row.model, row.kind, fmt(row.value), row.source, row.version }) do
        items[#items + 1] = v
      end
    end
    newest = math.max(newest, row.version)
  end
  return items, newest
end

-- Forget the slots out of every window, and the counts of Google days gone by.
local function drop_old(model, minute_from, day_from)
  local key = prefix .. "at:" .. model
  local upto = fmt(minute_from)
  if day_from <= minute_from then
    upto = "(" .. fmt(day_from)
  end
  local old = redis.call("ZRANGEBYSCORE", key, "-inf", upto)
  for _, member in ipairs(old) do
    redis.call("HDEL", prefix .. "slot", split(member, SEP, 2)[1])
  end
  if #old > 0 then
    redis.call("ZREMRANGEBYSCORE", key, "-inf", upto)
  end
  local days = redis.call("HKEYS", prefix .. "days:" .. model)
  for _, day in ipairs(days) do
    if num(day) < day_from then
      redis.call("HDEL", prefix .. "days:" .. model, day)
    end
  end
end

local function day_requests(model, day_from, google)
  if google then
    return num(redis.call("HGET", prefix .. "days:" .. model, fmt(day_from)) or "0")
  end
  return redis.call("ZCOUNT", prefix .. "at:" .. model, fmt(day_from), "+inf")
end

-- Seconds until the slot at `offset` (oldest first) of those after `since` leaves a window of
-- `length`; a short turn when there is none.
local function slot_leaves(model, offset, since, length, now)
  local raw = redis.call(
    "ZRANGEBYSCORE", prefix .. "at:" .. model, "(" .. fmt(since), "+inf", "WITHSCORES", "LIMIT", string.format("%d", math.max(offset, 0)), "1"
  )
  if #raw == 0 then
    return 0.05
  end
  return math.max(0, num(raw[2]) + length - now)
end

local function count_in(slots, since)
  local count, tokens = 0, 0
  for _, s in ipairs(slots) do
    if s.at > since then
      count, tokens = count + 1, tokens + s.tokens
    end
  end
  return count, tokens
end

-- The first window without room for one more request (local.py `_full_window`).
local function full_window(a, slots, count, held)
  local length = a.minute_s + a.margin_s
  if a.rpm and count + 1 > a.rpm then
    local offset = math.min(count - a.rpm, count - 1)
    return "rpm", count + 1 - a.rpm, slot_leaves(a.model, offset, a.now - length, length, a.now)
  end
  if a.tpm and count > 0 and held + a.tokens > a.tpm then
    local excess = held + a.tokens - a.tpm
    local since = a.now - a.minute_s - a.margin_s
    local wait = a.minute_s
    for _, s in ipairs(slots) do
      if s.at > since then
        excess = excess - s.tokens
        wait = s.at + a.minute_s + a.margin_s - a.now
        if excess <= 0 then
          break
        end
      end
    end
    return "tpm", held + a.tokens - a.tpm, math.max(0, wait)
  end
  if a.rpd then
    local day = day_requests(a.model, a.day_from, a.google)
    if day + 1 > a.rpd then
      local wait
      if a.google then
        wait = a.day_ends - a.now
      else
        wait = slot_leaves(a.model, math.max(0, day - a.rpd), a.day_from, a.now - a.day_from, a.now)
      end
      return "rpd", day + 1 - a.rpd, wait
    end
  end
  return nil
end

-- Seconds until a batch held back for the others' shares may have room (local.py
-- `_share_wait`): the `short`-th oldest slot of the window leaving, its own `over + 1`-th
-- leaving, or an owed batch's next ask (`waiting` less the grace; `waiting` if overdue).
local function share_wait(a, slots, length, short, over, owed)
  local wait = math.huge
  for _, waiting in ipairs(owed) do
    local ask = waiting - a.grace_s - a.now
    if waiting - a.grace_s <= a.now then
      ask = waiting - a.now
    end
    wait = math.min(wait, ask)
  end
  local seen, own = 0, 0
  for _, s in ipairs(slots) do
    if s.at > a.now - length then
      seen = seen + 1
      if seen == short then
        wait = math.min(wait, math.max(0, s.at + length - a.now))
      end
      if s.owner == a.owner then
        own = own + 1
        if own == over + 1 then
          wait = math.min(wait, math.max(0, s.at + length - a.now))
        end
      end
    end
  end
  return wait
end

-- Whether this batch must leave the window's room to the other contenders (local.py
-- `_over_share`); contenders lapsed a window ago are dropped on the way.
local function over_share(a, slots, count)
  if not a.rpm then
    return nil
  end
  local length = a.minute_s + a.margin_s
  local key = prefix .. "contender:" .. a.model
  local raw = redis.call("HGETALL", key)
  local taken = {}
  for _, s in ipairs(slots) do
    if s.at > a.now - length then
      taken[s.owner] = (taken[s.owner] or 0) + 1
    end
  end
  local others, mine = {}, 0
  for i = 1, #raw, 2 do
    local owner = raw[i]
    local f = split(raw[i + 1], SEP, 3)
    local till, waiting = num(f[1]), num(f[2])
    if owner == a.owner then
      mine = taken[owner] or 0
    elseif till > a.now then
      others[#others + 1] = { waiting = waiting, taken = taken[owner] or 0 }
    elseif till < a.now - length then
      redis.call("HDEL", key, owner)
    end
  end
  if #others == 0 then
    return nil
  end
  local share = math.ceil(a.rpm / (#others + 1))
  local owed, room = {}, a.rpm - count
  for _, o in ipairs(others) do
    if o.waiting > a.now and share - o.taken > 0 then
      owed[#owed + 1] = o.waiting
      room = room - (share - o.taken)
    end
  end
  if mine < share or room >= 1 then
    return nil
  end
  local wait = share_wait(a, slots, length, 1 - room, mine - share, owed)
  return "", 0, math.max(wait, a.share_recheck * a.minute_s, 0.01)
end

-- Whether other batches contend for the model (local.py `_shares` is None when none do).
local function others_contend(a)
  local raw = redis.call("HGETALL", prefix .. "contender:" .. a.model)
  for i = 1, #raw, 2 do
    if raw[i] ~= a.owner and num(split(raw[i + 1], SEP, 3)[1]) > a.now then
      return true
    end
  end
  return false
end

-- Why one more request (of `want` ready to go) has no room now, and when to ask again
-- (local.py `_refusal`): a full window (for several on a minute others contend for, once room
-- for them all may have come, if soon after room for one) or the others' shares.
local function refusal(a, slots, count, held, want)
  local metric, needed, wait = full_window(a, slots, count, held)
  if not metric then
    return over_share(a, slots, count)
  end
  if metric == "rpm" and want > 1 and others_contend(a) then
    local length = a.minute_s + a.margin_s
    local last = math.min(needed + want - 2, count - 1)
    local later = slot_leaves(a.model, last, a.now - length, length, a.now)
    wait = math.min(math.max(wait, later), wait + a.gather * a.minute_s)
  end
  return metric, needed, wait
end

local function contend(a, till, waiting)
  local value = table.concat({ fmt(till + a.grace_s), fmt(waiting), a.process }, SEP)
  redis.call("HSET", prefix .. "contender:" .. a.model, a.owner, value)
end

-- The other processes with slots in the minute or contending, every model of the quota.
local function count_others(now, minute_from, process)
  local seen, n = {}, 0
  local function add(p)
    if p ~= process and not seen[p] then
      seen[p], n = true, n + 1
    end
  end
  for _, model in ipairs(redis.call("SMEMBERS", prefix .. "models")) do
    for _, s in ipairs(slots_after(model, minute_from)) do
      add(s.process)
    end
    local raw = redis.call("HGETALL", prefix .. "contender:" .. model)
    for i = 1, #raw, 2 do
      local f = split(raw[i + 1], SEP, 3)
      if num(f[1]) > now then
        add(f[3])
      end
    end
  end
  return n
end

local function keep_all(a)
  local google_end = a.google and a.day_ends or a.now
  local seconds = math.ceil(math.max(a.minute_s + a.margin_s, google_end - a.day_from)) + 60
  for _, name in ipairs({ "ids", "slot", "models", "at:" .. a.model, "days:" .. a.model, "contender:" .. a.model }) do
    keep(prefix .. name, seconds)
  end
  for _, name in ipairs({ "news", "version" }) do
    keep(prefix .. name, math.ceil(a.kept_s))
  end
end

-- Write a slot of this admission (and count it in its Google day), known to `slots` too; its id.
local function take_slot(a, slots)
  local id = redis.call("INCR", prefix .. "ids")
  local day = ""
  if a.google then
    day = fmt(a.day_from)
    redis.call("HINCRBY", prefix .. "days:" .. a.model, day, 1)
  end
  local s = { id = tostring(id), tokens = a.tokens, owner = a.owner, process = a.process, day = day }
  local member = member_of(s)
  redis.call("ZADD", prefix .. "at:" .. a.model, fmt(a.now), member)
  redis.call("HSET", prefix .. "slot", tostring(id), a.model .. "\n" .. member)
  s.at = a.now
  -- In time order, as the windows are read (a settled slot may be stamped after now).
  local i = #slots
  while i > 0 and slots[i].at > a.now do
    i = i - 1
  end
  table.insert(slots, i + 1, s)
  return id
end

-- admit: model, now, tokens, rpm, tpm, rpd ("" when not limited), minute_s, margin_s,
-- day_from, day_ends ("" on a sliding day), seen, owner, process, count others (0/1),
-- kept_s, grace_s, share_recheck, want, gather, then settled (id, at, tokens) triples.
-- Answers {kind, others (-1 when not counted), ...}: "news", version, items (5 fields each);
-- "held", wait; "refused", wait, metric ("" for a share), needed; "slot", then the wait,
-- metric and needed for the rest when fewer were granted than wanted (0, "", 0 otherwise),
-- then the slot's id and the more ids.
local function admit()
  local function limit(text)
    if text == "" then return nil end
    return num(text)
  end
  local a = {
    model = ARGV[3], now = num(ARGV[4]), tokens = num(ARGV[5]),
    rpm = limit(ARGV[6]), tpm = limit(ARGV[7]), rpd = limit(ARGV[8]),
    minute_s = num(ARGV[9]), margin_s = num(ARGV[10]), day_from = num(ARGV[11]),
    google = ARGV[12] ~= "", day_ends = num(ARGV[12]), seen = num(ARGV[13]),
    owner = ARGV[14], process = ARGV[15], count = ARGV[16] == "1",
    kept_s = num(ARGV[17]), grace_s = num(ARGV[18]), share_recheck = num(ARGV[19]),
    want = num(ARGV[20]), gather = num(ARGV[21]),
  }
  write_settled(22)
  local items, version = news_since(a.seen, a.now, a.kept_s)
  if #items > 0 then
    local reply = { "news", -1, version }
    for _, v in ipairs(items) do reply[#reply + 1] = v end
    return reply
  end
  local hold = hold_of(a.model)
  if hold and hold > a.now then
    return { "held", -1, fmt(hold - a.now) }
  end
  local minute_from = a.now - a.minute_s - a.margin_s
  local length = a.minute_s + a.margin_s
  drop_old(a.model, minute_from, a.day_from)
  redis.call("SADD", prefix .. "models", a.model)
  local slots = slots_after(a.model, math.min(minute_from, a.now - length))
  local count, held = count_in(slots, minute_from)
  local others = -1
  if a.count then
    others = count_others(a.now, minute_from, a.process)
  end
  local metric, needed, wait = refusal(a, slots, count, held, a.want)
  if metric then
    contend(a, a.now + math.max(wait, length), a.now + wait + a.grace_s)
    keep_all(a)
    return { "refused", others, fmt(wait), metric, needed }
  end
  contend(a, a.now + length, 0)
  local ids = { take_slot(a, slots) }
  -- More slots wanted: each as if asked for alone, one after the other (local.py `admit`).
  while #ids < a.want do
    count, held = count + 1, held + a.tokens
    if full_window(a, slots, count, held) or over_share(a, slots, count) then
      break
    end
    ids[#ids + 1] = take_slot(a, slots)
  end
  -- Short of what it wanted: refused the rest in the same step, so it need not ask.
  metric, needed, wait = nil, 0, 0
  if #ids < a.want then
    metric, needed, wait = refusal(a, slots, count, held, a.want - #ids)
  end
  if metric then
    contend(a, a.now + math.max(wait, length), a.now + wait + a.grace_s)
  else
    needed, wait = 0, 0
  end
  keep_all(a)
  local reply = { "slot", others, fmt(wait), metric or "", needed }
  for _, id in ipairs(ids) do reply[#reply + 1] = id end
  return reply
end

-- forget: id. The slot leaves its windows and gives its Google day back.
local function forget()
  local row = redis.call("HGET", prefix .. "slot", ARGV[3])
  if not row then
    return 0
  end
  local model, member = unpack(split(row, "\n", 2))
  redis.call("ZREM", prefix .. "at:" .. model, member)
  redis.call("HDEL", prefix .. "slot", ARGV[3])
  local day = slot_of(member, 0).day
  if day ~= "" then
    redis.call("HINCRBY", prefix .. "days:" .. model, day, -1)
  end
  return 1
end

-- publish: model, kind (a metric or "hold"), value, source, at, kept_s. News under a new
-- version; a hold only ever lengthens.
local function publish()
  local model, kind, value = ARGV[3], ARGV[4], num(ARGV[5])
  local version = redis.call("INCR", prefix .. "version")
  local field = kind .. "\n" .. model
  if kind == "hold" then
    local current = hold_of(model)
    if current and current > value then
      return version
    end
  end
  local row = table.concat({ fmt(value), ARGV[6], tostring(version), ARGV[7] }, SEP)
  redis.call("HSET", prefix .. "news", field, row)
  for _, name in ipairs({ "news", "version" }) do
    keep(prefix .. name, math.ceil(num(ARGV[8])))
  end
  return version
end

-- close: owner, then settled triples. This batch contends no more, for any model.
local function close()
  write_settled(4)
  for _, model in ipairs(redis.call("SMEMBERS", prefix .. "models")) do
    redis.call("HDEL", prefix .. "contender:" .. model, ARGV[3])
  end
  return 1
end

-- usage: model, now, minute_s, margin_s, day_from, day_ends ("" on a sliding day), process.
-- {requests this minute, input tokens this minute, requests today, other processes}.
local function usage()
  local model, now = ARGV[3], num(ARGV[4])
  local minute_from = now - num(ARGV[5]) - num(ARGV[6])
  local count, tokens = count_in(slots_after(model, minute_from), minute_from)
  local day = day_requests(model, num(ARGV[7]), ARGV[8] ~= "")
  local seen, others = {}, 0
  for _, s in ipairs(slots_after(model, minute_from)) do
    if s.process ~= ARGV[9] and not seen[s.process] then
      seen[s.process], others = true, others + 1
    end
  end
  return { count, tokens, day, others }
end

-- settle: settled triples, written now (a send that came late; engine/sharing.py).
local function settle()
  write_settled(3)
  return 1
end

local operations = {
  admit = admit, forget = forget, publish = publish, close = close, usage = usage,
  settle = settle,
  check = function() return 1 end,
}
return operations[op]()
