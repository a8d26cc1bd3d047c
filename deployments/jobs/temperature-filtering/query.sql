-- Edge job: temperature filtering and alerting at the edge
-- (seed document 000, "Step 2: Define Edge Job Query").
WITH FilteredData AS (
    SELECT
        deviceId,
        temperature,
        humidity,
        System.Timestamp() AS timestamp
    FROM
        EdgeInput TIMESTAMP BY eventTime
    WHERE
        temperature > 70 -- Only process high temperatures
),
Alerts AS (
    SELECT
        deviceId,
        AVG(temperature) AS avgTemp,
        MAX(temperature) AS maxTemp,
        System.Timestamp() AS windowEnd
    FROM
        FilteredData
    GROUP BY
        deviceId,
        TumblingWindow(second, 30)
    HAVING
        AVG(temperature) > 80
)
-- Send all data to local storage
SELECT * INTO LocalOutput FROM FilteredData
-- Send only alerts to cloud
SELECT * INTO CloudOutput FROM Alerts
