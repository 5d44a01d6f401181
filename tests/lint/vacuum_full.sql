-- bad
VACUUM FULL "App"."Orders";
-- good
VACUUM (ANALYZE) "App"."Orders";
