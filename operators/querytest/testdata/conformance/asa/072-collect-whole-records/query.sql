SELECT Collect() AS allEvents
FROM Input
GROUP BY Tumbling(second, 10)
