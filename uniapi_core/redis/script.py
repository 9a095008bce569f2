"""The one Lua script that makes every shared routing decision atomically inside Redis.

Theory of operation
-------------------
Every decision that several gateway processes must agree on (a client key's rate limit, a
rotation position, which channels are cooling, which provider key an attempt uses) is one
call of this script (``EVALSHA sha 0 mode request now``): Redis runs a script to its end
before it runs anything else, so N processes deciding at once are decided one after another,
exactly. ``routing/shared.py`` builds the requests and reads the answers; the semantics are
the single-node ones of ``ratelimit/limiter.py``, ``routing/schedule.py``,
``routing/cooldown.py`` and ``routing/keypool.py``, rule for rule, and
``tests/core/test_shared_state.py`` runs the same random operations through both and
compares every verdict.

``request`` is JSON; ``now`` is seconds (a decimal text) or empty, which means Redis's own
clock (``TIME``): one clock for the whole fleet, whatever the skew between machines. Time
never runs backwards: the script keeps the latest time it decided at (``<prefix>clock``) and
takes the later of the two, as ``Limiter.effective_now`` does.

Modes:

``route``  ``{p, lim?, sched?, ch: [{c, pool}…]}``: the client key's windows (all or nothing;
           a refusal answers ``{rl: seconds, wi: window}`` and changes nothing else), then the
           rotation (``rr``: a counter; ``wrr``: nginx's smooth weighted counters), then the
           cooldowns (available channels first, cooling ones after, soonest end first), then
           the first usable provider key along that order. Answers ``{o, cl, p, i, sk}``: the
           order (indexes into ``ch``), each ordered channel's remaining cooldown (0: none),
           the position that got a key (null: none), the key (null: keyless), and for each
           channel passed over on the way, the seconds until its earliest key frees a slot
           (0: its keys are benched or excluded).
``pick``   ``{p, ch, ex}``: the same walk for a retry, from the current channel (``ex``: its
           keys already tried). Answers ``{p, i, sk}``.
``note``   ``{p, cool: [[c, seconds]…], bench: [[b, seconds]…]}``: a failure cools a channel or
           benches a key until now + seconds (a later end is kept). Answers ``{}``.
``admit``  ``{p, lim}``: the limiter alone (the property tests' entry). Answers ``{rl, wi}``
           or ``{}``.
``token``  ``{p, a, l, o}``: a Vertex service account's access token, one fetch for the
           fleet: ``{t, s}`` (the token, seconds it stays fresh), else ``{claim: true}`` (this
           caller fetches: ``t:<d>:lock`` holds its owner id ``o`` for ``l`` ms), else
           ``{wait: true}`` (another one is fetching). ``token_put`` ``{p, a, o, t?, s}``
           stores a fetched token for ``s`` seconds (none after a failure, or when the asker
           went away) and frees the lock if ``o`` still holds it; ``token_drop`` ``{p, a, t}``
           forgets the token Vertex refused, if it is still the one stored.

Keys (``p`` is ``uniapi:<fleet>:``; every ``<d>`` is a digest ``routing/shared.py`` makes of
what the state belongs to): ``clock``; ``seq`` (admission serial numbers, so two admissions
at one instant are two members); ``w:<d>`` a sliding window (a sorted set of admission
times); ``s:<d>`` a rotation; ``c:<d>`` a channel's cooldown end; ``k:<d>`` a key pool's
cursor; ``k:<d>:<i>`` key ``i``'s bench end; ``t:<d>`` a Vertex access token and
``t:<d>:lock`` the claim on its fetch. Every one of these expires by itself once it can no
longer matter (windows after their period, ends at the end, rotations and cursors a day after
last use), so nothing piles up; three small keys per fleet stay: ``clock``, ``seq`` and
``reload`` (the reload generation, ``routing/shared.py`` ``ReloadFollower``). Redis Cluster is
not supported: the keys are not declared.
"""

from __future__ import annotations

import hashlib

__all__ = ["SOURCE", "SHA"]

SOURCE = r"""
local mode, req = ARGV[1], cjson.decode(ARGV[2])
local P = req.p
local now
if ARGV[3] ~= nil and ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local clock = tonumber(redis.call('GET', P .. 'clock'))
if clock ~= nil and clock > now then now = clock
else redis.call('SET', P .. 'clock', string.format('%.17g', now)) end
local DAY = 86400

local function fmt(x) return string.format('%.17g', x) end

-- ratelimit/limiter.py Limiter.check: the longest wait of the windows that are full
local function check(ws)
  local worst, wi = nil, nil
  for i, w in ipairs(ws) do
    local key = P .. 'w:' .. w.k
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - w.s))
    local c = redis.call('ZCARD', key)
    if c >= w.n then
      local s = redis.call('ZRANGE', key, c - w.n, c - w.n, 'WITHSCORES')
      local wait = math.ceil(tonumber(s[2]) + w.s - now)
      if wait < 1 then wait = 1 end
      if worst == nil or wait > worst then worst, wi = wait, i end
    end
  end
  return worst, wi
end

local function record(ws)
  if #ws == 0 then return end
  local seq = redis.call('INCR', P .. 'seq')
  for _, w in ipairs(ws) do
    local key = P .. 'w:' .. w.k
    redis.call('ZADD', key, fmt(now), seq)
    redis.call('PEXPIRE', key, math.ceil(w.s * 1000) + 1000)
  end
end

local function admit(ws)
  local worst, wi = check(ws)
  if worst ~= nil then return worst, wi end
  record(ws)
  return nil, nil
end

local function ends_at(key)
  local v = tonumber(redis.call('GET', key))
  if v ~= nil and now < v then return v end
  return nil
end

local function extend(key, seconds)
  if not (seconds > 0) then return end
  local e = now + seconds
  local old = tonumber(redis.call('GET', key))
  if old == nil or e > old then
    redis.call('SET', key, fmt(e), 'PX', math.ceil(seconds * 1000) + 1000)
  end
end

-- routing/schedule.py: the position that goes first
local function rotate(st, n)
  local key = P .. 's:' .. st.k
  if st.a == 'rr' then
    local v = redis.call('INCR', key)
    redis.call('EXPIRE', key, DAY)
    return (v - 1) % n
  end
  local cur = {}
  local saved = redis.call('GET', key)
  if saved then for x in string.gmatch(saved, '-?%d+') do cur[#cur + 1] = tonumber(x) end end
  if #cur ~= n then cur = {} for i = 1, n do cur[i] = 0 end end
  local total, best = 0, 1
  for i = 1, n do
    total = total + st.w[i]
    cur[i] = cur[i] + st.w[i]
    if cur[i] > cur[best] then best = i end
  end
  cur[best] = cur[best] - total
  redis.call('SET', key, table.concat(cur, ','), 'EX', DAY)
  return best - 1
end

-- routing/keypool.py KeyPools.pick: {usable, index or nil, retry_after or nil}
local function pick(pl, ex)
  if pl.n == 0 then
    if type(pl.l0) == 'table' then
      local ra = admit(pl.l0)
      if ra ~= nil then return false, nil, ra end
    end
    return true, nil, nil
  end
  local order = {}
  local ck = P .. 'k:' .. pl.k
  if pl.a == 'fixed' then for i = 0, pl.n - 1 do order[#order + 1] = i end
  elseif pl.a == 'random' then order = pl.o
  else
    local c = (tonumber(redis.call('GET', ck)) or 0) % pl.n
    for j = 0, pl.n - 1 do order[#order + 1] = (c + j) % pl.n end
  end
  local ra = nil
  for _, i in ipairs(order) do
    if not ex[i] and ends_at(ck .. ':' .. i) == nil then
      local ws = type(pl.l) == 'table' and pl.l[i + 1] or nil
      local wait = nil
      if type(ws) == 'table' then wait = admit(ws) end
      if wait == nil then
        if pl.a == 'rr' then redis.call('SET', ck, (i + 1) % pl.n, 'EX', DAY) end
        return true, i, nil
      end
      if ra == nil or wait < ra then ra = wait end
    end
  end
  return false, nil, ra
end

-- the walk of RoutePlan.next_attempt: the first channel with a usable key
local function walk(chs, order, first_ex)
  local sk = {}
  for pos, idx in ipairs(order) do
    local ex = {}
    if pos == 1 and first_ex then for _, i in ipairs(first_ex) do ex[i] = true end end
    local ok, i, ra = pick(chs[idx].pool, ex)
    if ok then
      if i == nil then i = cjson.null end
      return pos - 1, i, sk
    end
    sk[#sk + 1] = ra or 0
  end
  return cjson.null, cjson.null, sk
end

if mode == 'admit' then
  local ra, wi = admit(req.lim)
  if ra == nil then return '{}' end
  return cjson.encode({rl = ra, wi = wi - 1})
end

if mode == 'note' then
  for _, x in ipairs(req.cool or {}) do extend(P .. 'c:' .. x[1], x[2]) end
  for _, x in ipairs(req.bench or {}) do extend(P .. 'k:' .. x[1], x[2]) end
  return '{}'
end

if mode == 'pick' then
  local order = {}
  for i = 1, #req.ch do order[i] = i end
  local p, i, sk = walk(req.ch, order, req.ex)
  return cjson.encode({p = p, i = i, sk = sk})
end

if mode == 'route' then
  if type(req.lim) == 'table' then
    local ra, wi = admit(req.lim)
    if ra ~= nil then return cjson.encode({rl = ra, wi = wi - 1}) end
  end
  local n = #req.ch
  local first = 0
  if type(req.sched) == 'table' and n > 1 then first = rotate(req.sched, n) end
  local ordered = {}
  if type(req.sched) == 'table' and req.sched.a == 'rr' then
    for j = 0, n - 1 do ordered[#ordered + 1] = ((first + j) % n) + 1 end
  else
    ordered[1] = first + 1
    for j = 1, n do if j ~= first + 1 then ordered[#ordered + 1] = j end end
  end
  local avail, cooling = {}, {}
  for pos, idx in ipairs(ordered) do
    local e = ends_at(P .. 'c:' .. req.ch[idx].c)
    if e == nil then avail[#avail + 1] = idx
    else cooling[#cooling + 1] = {e, pos, idx} end
  end
  table.sort(cooling, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local order, cl = {}, {}
  for _, idx in ipairs(avail) do order[#order + 1] = idx; cl[#cl + 1] = 0 end
  for _, x in ipairs(cooling) do order[#order + 1] = x[3]; cl[#cl + 1] = x[1] - now end
  local p, i, sk = walk(req.ch, order, nil)
  local o = {}
  for k, idx in ipairs(order) do o[k] = idx - 1 end
  return cjson.encode({o = o, cl = cl, p = p, i = i, sk = sk})
end

if mode == 'token' then
  local key = P .. 't:' .. req.a
  local tok = redis.call('GET', key)
  if tok then return cjson.encode({t = tok, s = redis.call('PTTL', key) / 1000}) end
  if redis.call('SET', key .. ':lock', req.o, 'NX', 'PX', req.l) then return '{"claim":true}' end
  return '{"wait":true}'
end

if mode == 'token_put' then
  local key = P .. 't:' .. req.a
  if type(req.t) == 'string' and req.s > 0 then
    redis.call('SET', key, req.t, 'PX', math.floor(req.s * 1000))
  end
  if redis.call('GET', key .. ':lock') == req.o then redis.call('DEL', key .. ':lock') end
  return '{}'
end

if mode == 'token_drop' then
  local key = P .. 't:' .. req.a
  if redis.call('GET', key) == req.t then redis.call('DEL', key) end
  return '{}'
end

return redis.error_reply('uniapi: unknown mode ' .. tostring(mode))
"""

#: what ``EVALSHA`` names the script by
SHA = hashlib.sha1(SOURCE.encode("utf-8")).hexdigest()
