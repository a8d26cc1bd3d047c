-- Video analytics at the edge (seed document 000, Example 2).
-- Modifications: the seed's after-hours test `DATEPART(hour, ...) BETWEEN
-- 22 AND 6` can never be true (22 > 6), so it is written as hour >= 22 OR
-- hour < 6; and frames are stamped with their own time (TIMESTAMP BY
-- timestamp) so the sample replays the same way every time.
WITH VideoFrames AS (
    SELECT cameraId, frameId, timestamp, detectedObjects, confidenceScore
    FROM VideoInput TIMESTAMP BY timestamp
),
ObjectDetections AS (
    SELECT cameraId, frameId, timestamp,
           GetArrayElement(detectedObjects, 0) AS primaryObject,
           confidenceScore
    FROM VideoFrames
    WHERE confidenceScore > 0.8 -- High confidence detections only
),
SecurityAlerts AS (
    SELECT cameraId, COUNT(*) AS detectionCount, COLLECT() AS detections,
           System.Timestamp() AS windowEnd
    FROM ObjectDetections
    WHERE GetRecordPropertyValue(primaryObject, 'class') = 'person'
      AND (DATEPART(hour, System.Timestamp()) >= 22 OR DATEPART(hour, System.Timestamp()) < 6) -- After hours
    GROUP BY cameraId, SlidingWindow(minute, 5)
    HAVING COUNT(*) > 3 -- Multiple detections
)
SELECT * INTO CloudAlerts FROM SecurityAlerts
SELECT * INTO LocalStorage FROM ObjectDetections
