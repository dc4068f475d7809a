//! The API's contract: one table of every operation (method, documented path, who may call
//! it, request body type, success status and body type), checked three ways. The table and
//! `/api/openapi.json` list the same operations, so a route registered without a table row,
//! or a row whose route is gone, fails; each operation's documented `requestBody` and
//! success schemas are the `cascade-proto` types the table names, its errors the error
//! schema, its path parameters and security declared; and each row is driven against a real
//! server with a body of its request type, whose answer must parse as the named response
//! type and serialize back to exactly the JSON received (no field the type lacks, none it
//! adds).
//!
//! - `row`: the table's columns (who may call, what the answer is) and the helpers its rows
//!   are written with;
//! - `table`: the table itself, by area;
//! - `document`: the table against `/api/openapi.json`;
//! - `drive`: the table against a real server.

mod document;
mod drive;
mod row;
mod table;
