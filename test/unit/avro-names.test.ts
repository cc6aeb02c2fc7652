import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignFieldNames, avroName, avroNamespace } from '../../src/avro/names.ts';

test('avroName replaces invalid characters and a leading digit', () => {
  assert.equal(avroName('id'), 'id');
  assert.equal(avroName('Order_Id2'), 'Order_Id2');
  assert.equal(avroName('a-b'), 'a_b');
  assert.equal(avroName('first name'), 'first_name');
  assert.equal(avroName('1col'), '_1col');
  assert.equal(avroName('9'), '_9');
  assert.equal(avroName('naïve'), 'na_ve');
  assert.equal(avroName('a.b'), 'a_b');
  assert.equal(avroName(''), '_');
});

test('avroNamespace: prefix split on dots, each component sanitised', () => {
  assert.equal(avroNamespace('pgcdc', 'public', 'orders'), 'pgcdc.public.orders');
  assert.equal(avroNamespace('prod-db.eu', 'my schema', 'a.b'), 'prod_db.eu.my_schema.a_b');
  assert.equal(avroNamespace('pgcdc', 'public', '2024_sales'), 'pgcdc.public._2024_sales');
});

test('field name collisions resolve deterministically; valid names never move', () => {
  assert.deepEqual(assignFieldNames(['a-b', 'a_b']), ['a_b_2', 'a_b']);
  assert.deepEqual(assignFieldNames(['a_b', 'a-b']), ['a_b', 'a_b_2']);
  assert.deepEqual(assignFieldNames(['a-b', 'a b', 'a.b']), ['a_b', 'a_b_2', 'a_b_3']);
  assert.deepEqual(assignFieldNames(['a-b', 'a b', 'a_b_2']), ['a_b', 'a_b_3', 'a_b_2']);
  assert.deepEqual(assignFieldNames(['x', 'y']), ['x', 'y']);
  const names = ['Δ', 'é', '_'];
  assert.deepEqual(assignFieldNames(names), ['__2', '__3', '_']);
  assert.deepEqual(assignFieldNames(names), assignFieldNames([...names]));
});
