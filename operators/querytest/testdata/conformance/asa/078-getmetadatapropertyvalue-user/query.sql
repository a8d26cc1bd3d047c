SELECT
    Name,
    GetMetadataPropertyValue(iotInput, '[User].[SenderClientId]') AS SenderClientId,
    GetMetadataPropertyValue(iotInput, '[User]') AS userprops
FROM iotInput
