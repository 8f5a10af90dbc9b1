PRAGMA cache_size = -400000;
CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO t SELECT i, printf('name-%08d', (i * 7919) % 1000003), i % 1000,
                    printf('%s-%s', hex(i * 2654435761 % 4294967296), i) FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b, c);
SELECT count(*), sum(b), min(a), max(c) FROM t;
SELECT b, count(*), min(a) FROM t GROUP BY b ORDER BY b LIMIT 5;
SELECT a FROM t WHERE a LIKE 'name-0001%' ORDER BY a LIMIT 5;
SELECT t1.id, t2.id FROM t t1 JOIN t t2 ON t1.a = t2.a AND t1.id < t2.id LIMIT 5;
