-- Argo CD health of the Panoptes kinds (Streamer, Stream, Preset, Organization, User).
-- One script for all five: they share the status conventions (a Ready condition and
-- observedGeneration, see README "GitOps"). Argo CD runs it with `obj` set to the live object
-- and Lua 5.1 (gopher-lua) without os/io; tested by tests/gitops_health.rs.

-- Ready=False reasons that resolve by themselves (waiting on something that is on its way);
-- every other False reason needs a person and is Degraded.
local transient = {
  Pending = true, Progressing = true, Reconciling = true, Scheduling = true,
  Starting = true, Waiting = true, Syncing = true, Probing = true,
  -- The config is on its way to the ingest node.
  NotSynced = true,
  -- A reference applied later in the same sync (ordering inside a sync is not guaranteed).
  MissingReference = true,
  -- A soft-deleted Preset waits for its last camera to leave.
  MarkedDeleted = true,
}

local function condition(conditions, type_)
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function health(obj)
  local hs = {}
  local generation = obj.metadata.generation
  if obj.metadata.deletionTimestamp ~= nil then
    hs.status = "Progressing"
    hs.message = "Being deleted (Panoptes removes it from the streamer nodes first)"
    return hs
  end
  local status = obj.status
  if status == nil or status.conditions == nil or status.observedGeneration == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for Panoptes to report status"
    return hs
  end
  if generation ~= nil and status.observedGeneration ~= generation then
    hs.status = "Progressing"
    hs.message = "Panoptes has not yet observed generation " .. generation
    return hs
  end
  -- kstatus' abnormal-true conditions, should a controller set them.
  local stalled = condition(status.conditions, "Stalled")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(stalled)
    return hs
  end
  local reconciling = condition(status.conditions, "Reconciling")
  if reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(reconciling)
    return hs
  end
  local ready = condition(status.conditions, "Ready")
  if ready == nil then
    hs.status = "Progressing"
    hs.message = "No Ready condition yet"
    return hs
  end
  if ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration ~= generation then
    hs.status = "Progressing"
    hs.message = "Ready describes an older generation"
    return hs
  end
  if ready.status == "True" then
    hs.status = "Healthy"
    hs.message = describe(ready)
    return hs
  end
  -- A camera switched off on purpose (spec.disabled) is not a fault.
  if ready.reason == "Disabled" then
    hs.status = "Suspended"
    hs.message = describe(ready)
    return hs
  end
  -- A Stream no node can take, or a Streamer Panoptes cannot reach, says why in a more
  -- specific condition than Ready.
  local cause = ready
  for _, t in ipairs({"Scheduled", "Reachable", "ConfigApplied", "Synced"}) do
    local c = condition(status.conditions, t)
    if c ~= nil and c.status == "False" then
      cause = c
      break
    end
  end
  if ready.status == "Unknown" or transient[ready.reason] or transient[cause.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(cause)
  return hs
end

return health(obj)
