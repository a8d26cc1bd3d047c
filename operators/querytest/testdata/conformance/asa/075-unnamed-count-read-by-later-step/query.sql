WITH PerToll AS (
    SELECT System.Timestamp() AS OutTime, TollId, COUNT(*)
    FROM Input TIMESTAMP BY EntryTime
    GROUP BY TollId, TumblingWindow(minute, 3)
)
SELECT SUM(count) AS Total
FROM PerToll
GROUP BY TumblingWindow(minute, 3)
