SELECT
    time,
    UDF.hex2Int(offset) AS IntOffset
INTO
    output
FROM
    InputStream
