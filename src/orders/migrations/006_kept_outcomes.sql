-- An Idempotency-Key keeps its request's outcome as the orders client returns it, not the HTTP
-- body: {"ok": true, "order": {…}} or {"ok": false, "refusal": {"code", "detail", "extras"}}.
-- The HTTP shell renders it (201/200 with the order, or the problem document) on every replay.
update idempotency_keys
   set response = case
         when response ? 'order' then jsonb_build_object('ok', true, 'order', response -> 'order')
         else jsonb_build_object('ok', false, 'refusal', jsonb_build_object(
                'code', response ->> 'code',
                'detail', response ->> 'detail',
                'extras', response - 'type' - 'title' - 'status' - 'code' - 'detail' - 'instance'))
       end
 where response is not null and not response ? 'ok';
