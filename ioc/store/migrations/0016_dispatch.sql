-- The unit an incident is handed to (`ioc.dispatch`, units.toml) and since when: its SLA clock.
ALTER TABLE fused_incidents ADD COLUMN IF NOT EXISTS unit text;
ALTER TABLE fused_incidents ADD COLUMN IF NOT EXISTS assigned_at timestamptz;
CREATE INDEX IF NOT EXISTS fused_incidents_unit ON fused_incidents (unit)
    WHERE status IN ('open', 'acknowledged');
