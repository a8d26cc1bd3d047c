-- Edge-based predictive maintenance (seed document 000, Example 3).
-- Modification: the seed computes overallHealth from vibrationScore and
-- temperatureScore in the same SELECT that defines them, which the dialect
-- does not allow (a SELECT cannot read its own aliases); the scores are
-- computed in one step and combined in the next.
WITH MachineMetrics AS (
    SELECT machineId, vibration, temperature, pressure, rotationalSpeed,
           System.Timestamp() AS timestamp
    FROM MachineInput TIMESTAMP BY eventTime
),
Scores AS (
    SELECT machineId,
           CASE WHEN vibration > 10 THEN 0.4 WHEN vibration > 8 THEN 0.7 ELSE 1.0 END AS vibrationScore,
           CASE WHEN temperature > 80 THEN 0.4 WHEN temperature > 70 THEN 0.7 ELSE 1.0 END AS temperatureScore,
           timestamp
    FROM MachineMetrics
),
HealthScore AS (
    SELECT machineId, vibrationScore, temperatureScore,
           (vibrationScore + temperatureScore) / 2 AS overallHealth, timestamp
    FROM Scores
),
MaintenanceAlerts AS (
    SELECT machineId, AVG(overallHealth) AS avgHealth, MIN(overallHealth) AS minHealth,
           System.Timestamp() AS windowEnd
    FROM HealthScore
    GROUP BY machineId, HoppingWindow(minute, 10, 5)
    HAVING AVG(overallHealth) < 0.6 -- Poor health score
)
-- Trigger local maintenance workflow
SELECT * INTO MaintenanceModule FROM MaintenanceAlerts
-- Report to cloud for trending
SELECT * INTO CloudTelemetry FROM HealthScore
