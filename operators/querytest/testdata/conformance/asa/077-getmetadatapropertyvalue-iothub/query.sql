SELECT
    deviceId,
    GetMetadataPropertyValue(iotInput, 'IoTHub.CorrelationId') AS iotCorrelationId,
    GetMetadataPropertyValue(iotInput, '[IoTHub].[ConnectionDeviceId]') AS connectionDeviceId,
    GetMetadataPropertyValue(iotInput, 'IoTHub.MessageId') AS messageId,
    GetMetadataPropertyValue(iotInput, 'IoTHub.EnqueuedTime') AS myEnqueuedTime,
    GetMetadataPropertyValue(iotInput, 'EventEnqueuedUtcTime') AS eventEnqueuedUtcTime
FROM iotInput
