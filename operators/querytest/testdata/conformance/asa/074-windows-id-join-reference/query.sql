WITH HoppingWindowResults
(
    SELECT
        System.Window().Id,
        TollId,
        COUNT(*)
    FROM Input TIMESTAMP BY EntryTime
    GROUP BY
        TollId,
        Windows(
            Window('H10', Hopping(minute, 10, 5)),
            Window('H20', Hopping(minute, 20, 5)))
)

SELECT HoppingWindowResults.Id, HoppingWindowResults.TollId, HoppingWindowResults.count
FROM HoppingWindowResults
JOIN ReferenceTable ON
    HoppingWindowResults.TollId = ReferenceTable.TollId
    AND HoppingWindowResults.Id = ReferenceTable.windowId
