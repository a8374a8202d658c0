-- How a resolved incident ended (`ioc.models.incidents.Resolution`): handled by staff, a false
-- alarm by staff's judgement, or cleared by itself with nobody judging it. Staff labels are what
-- a camera or sensor rule is judged by: precision per camera and rule on the cameras wall, and
-- the labelled set that `ioc replay labels` exports for `ioc replay --compare`.

ALTER TABLE fused_incidents ADD COLUMN IF NOT EXISTS resolution text
    CHECK (resolution IN ('handled', 'false_alarm', 'cleared'));
UPDATE fused_incidents SET resolution = CASE WHEN resolved_by = 'ioc' THEN 'cleared'
                                             ELSE 'handled' END
    WHERE status = 'resolved' AND resolution IS NULL;

-- Each camera rule's record on each camera: the incidents staff judged real (handled) or false,
-- and those nobody judged; precision over the judged ones (NULL before any is judged).
CREATE OR REPLACE VIEW camera_rule_precision AS
SELECT m->>'source_key' AS camera_id,
       m->>'kind' AS rule,
       count(*) FILTER (WHERE f.resolution = 'handled') AS confirmed,
       count(*) FILTER (WHERE f.resolution = 'false_alarm') AS false_alarms,
       count(*) FILTER (WHERE f.resolution = 'cleared' OR f.resolution IS NULL) AS unjudged,
       round(count(*) FILTER (WHERE f.resolution = 'handled')::numeric
             / nullif(count(*) FILTER (WHERE f.resolution IN ('handled', 'false_alarm')), 0),
             3) AS precision,
       max(f.event_time) AS last_seen
FROM fused_incidents AS f
CROSS JOIN LATERAL jsonb_array_elements(f.members) AS m
WHERE m->>'source' = 'vision' AND f.status <> 'merged'
GROUP BY 1, 2;
