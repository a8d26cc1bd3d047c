SELECT
        System.Window().Id,
        TollId,
        COUNT(*)
FROM Input TIMESTAMP BY EntryTime
GROUP BY
        TollId,
        Windows(
            Window('1 min', TumblingWindow(minute, 1)),
            Window('2 min', TumblingWindow(minute, 2)))
