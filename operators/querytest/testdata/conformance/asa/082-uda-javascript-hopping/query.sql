SELECT
    System.Timestamp() AS WindowEnd,
    uda.SumOnly(Value) AS Total,
    SUM(Value) AS Expected
FROM Input TIMESTAMP BY Time
GROUP BY HoppingWindow(second, 10, 5)
