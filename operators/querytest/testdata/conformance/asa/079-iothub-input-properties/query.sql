SELECT
    IoTHub.ConnectionDeviceId AS deviceId,
    IoTHub.MessageId AS messageId,
    EventEnqueuedUtcTime AS enqueued,
    temperature
FROM input TIMESTAMP BY EventEnqueuedUtcTime
WHERE temperature > 25
