-- Everything a version of pg_runbook defines, as text that does not depend on OIDs or on the
-- order objects were created in: the upgrade test diffs this between a database upgraded from
-- the previous version and a fresh install of the new one.
WITH ext AS (
  SELECT e.oid, e.extnamespace FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_runbook'
), members AS (
  SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
  WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
)
SELECT 'routine ' || p.oid::pg_catalog.regprocedure::text
       || ' returns ' || pg_catalog.pg_get_function_result(p.oid)
       || ' args ' || pg_catalog.pg_get_function_arguments(p.oid)
       || ' kind ' || p.prokind::text || ' vol ' || p.provolatile::text || ' par ' || p.proparallel::text
       || ' strict ' || p.proisstrict || ' secdef ' || p.prosecdef
       || ' config ' || coalesce(p.proconfig::text, '-')
       || ' lang ' || l.lanname
       || ' body ' || CASE WHEN l.lanname = 'c' THEN coalesce(p.probin, '') || ':' || p.prosrc
                           WHEN p.prokind = 'a' THEN 'aggregate' ELSE md5(coalesce(pg_catalog.pg_get_functiondef(p.oid), '')) END
       || ' acl ' || coalesce((SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text) FROM unnest(p.proacl) a), '-')
       || ' comment ' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '-') AS item
FROM members m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = m.objid
JOIN pg_catalog.pg_language l ON l.oid = p.prolang
UNION ALL
SELECT 'relation ' || c.relname || ' kind ' || c.relkind::text
       || ' acl ' || coalesce((SELECT pg_catalog.string_agg(a::text, ',' ORDER BY a::text) FROM unnest(c.relacl) a), '-')
       || ' comment ' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '-')
       || CASE WHEN c.relkind IN ('v', 'm') THEN ' def ' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
       || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' identity ' || a.attidentity::text ELSE '' END
       || ' comment ' || coalesce(pg_catalog.col_description(c.oid, a.attnum), '-')
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'constraint ' || c.relname || '.' || co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid)
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
JOIN pg_catalog.pg_constraint co ON co.conrelid = c.oid
UNION ALL
SELECT 'index ' || pg_catalog.pg_get_indexdef(i.indexrelid)
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
UNION ALL
SELECT 'trigger ' || pg_catalog.pg_get_triggerdef(t.oid)
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = m.objid
JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND NOT t.tgisinternal
UNION ALL
SELECT 'config dump ' || c.relname || coalesce(' where ' || cond, '')
FROM pg_catalog.pg_extension e, LATERAL unnest(e.extconfig, e.extcondition) AS u(cfg, cond)
JOIN pg_catalog.pg_class c ON c.oid = u.cfg
WHERE e.extname = 'pg_runbook'
UNION ALL
SELECT 'other member ' || pg_catalog.pg_describe_object(m.classid, m.objid, 0)
FROM members m
WHERE m.classid NOT IN ('pg_catalog.pg_proc'::pg_catalog.regclass, 'pg_catalog.pg_class'::pg_catalog.regclass)
ORDER BY 1;
