SELECT I1.TollId, I1.EntryTime, I1.LicensePlate, R.RegistrationId
FROM Input1 I1 TIMESTAMP BY EntryTime
LEFT OUTER JOIN Input2 I2 TIMESTAMP BY ExitTime
ON I1.TollId = I2.TollId
AND I1.LicensePlate = I2.LicensePlate
AND DATEDIFF(minute, I1, I2) BETWEEN 0 AND 15
JOIN Registration R
ON I1.LicensePlate = R.LicensePlate
WHERE I2.TollId IS NULL
