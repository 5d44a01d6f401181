-- bad
CLUSTER "App"."Orders" USING "Orders_pkey";
-- good
ANALYZE "App"."Orders";
