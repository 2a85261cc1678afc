//! Parameterized SPI with plans prepared once per backend, run on a chosen snapshot, and columns
//! read as borrowed bytes. pgrx's `Spi` always runs on the transaction's snapshot, and a chain
//! anchor must be read on a fresh one (see `chain_head`). Connection handling stays with
//! `Spi::connect`.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// A statement prepared on first use and kept for the life of the backend.
pub struct KeptPlan {
    sql: &'static CStr,
    arg_types: &'static [pg_sys::Oid],
    plan: Cell<pg_sys::SPIPlanPtr>,
}

// SAFETY: a PostgreSQL backend runs its queries on one thread; plans never cross threads.
unsafe impl Sync for KeptPlan {}

impl KeptPlan {
    pub const fn new(sql: &'static CStr, arg_types: &'static [pg_sys::Oid]) -> Self {
        KeptPlan {
            sql,
            arg_types,
            plan: Cell::new(std::ptr::null_mut()),
        }
    }

    /// The plan, prepared now if this is its first use. Call inside `Spi::connect`.
    fn get(&self) -> pg_sys::SPIPlanPtr {
        if self.plan.get().is_null() {
            let n_args = i32::try_from(self.arg_types.len()).expect("a handful of arguments");
            // SAFETY: called inside an SPI connection; the arrays outlive the call.
            let plan = unsafe {
                pg_sys::SPI_prepare(
                    self.sql.as_ptr(),
                    n_args,
                    self.arg_types.as_ptr().cast_mut(),
                )
            };
            if plan.is_null() {
                error!("SPI_prepare failed for {:?}", self.sql);
            }
            // SAFETY: plan is a valid, unsaved plan from SPI_prepare.
            unsafe { pg_sys::SPI_keepplan(plan) };
            self.plan.set(plan);
        }
        self.plan.get()
    }

    /// Runs the plan read-only on `snapshot` (the transaction's when null) and returns the rows.
    pub fn query(
        &self,
        args: &[Option<pg_sys::Datum>],
        snapshot: pg_sys::Snapshot,
        limit: i64,
    ) -> Rows {
        let (mut values, nulls) = split_args(args);
        // SAFETY: inside an SPI connection, with as many arguments as the plan declares.
        let rc = unsafe {
            pg_sys::SPI_execute_snapshot(
                self.get(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                snapshot,
                std::ptr::null_mut(),
                true,
                false,
                limit,
            )
        };
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            error!("SPI query failed ({rc}) for {:?}", self.sql);
        }
        // SAFETY: a successful SELECT leaves its result in SPI_tuptable / SPI_processed.
        unsafe { Rows::take() }
    }

    /// Opens a read-only cursor over the plan, on the active snapshot. Call inside `Spi::connect`.
    pub fn cursor(&self, args: &[Option<pg_sys::Datum>]) -> Cursor {
        let (mut values, nulls) = split_args(args);
        // SAFETY: inside an SPI connection, with as many arguments as the plan declares; the
        // portal copies the arguments.
        let portal = unsafe {
            pg_sys::SPI_cursor_open(
                std::ptr::null(),
                self.get(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                true,
            )
        };
        if portal.is_null() {
            error!("SPI_cursor_open failed for {:?}", self.sql);
        }
        Cursor { portal }
    }
}

/// A read-only SPI cursor, closed on drop.
pub struct Cursor {
    portal: pg_sys::Portal,
}

impl Cursor {
    /// The next `count` rows at most; none once the cursor is through.
    pub fn fetch(&mut self, count: i64) -> Rows {
        // SAFETY: the portal is open until drop; SPI_cursor_fetch leaves its rows in
        // SPI_tuptable / SPI_processed.
        unsafe {
            pg_sys::SPI_cursor_fetch(self.portal, true, count);
            Rows::take()
        }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // SAFETY: opened once, closed once.
        unsafe { pg_sys::SPI_cursor_close(self.portal) }
    }
}

fn split_args(args: &[Option<pg_sys::Datum>]) -> (Vec<pg_sys::Datum>, Vec<std::ffi::c_char>) {
    args.iter()
        .map(|a| match a {
            Some(d) => (*d, b' ' as std::ffi::c_char),
            None => (pg_sys::Datum::from(0), b'n' as std::ffi::c_char),
        })
        .unzip()
}

/// The rows of one SPI result, freed on drop.
pub struct Rows {
    table: *mut pg_sys::SPITupleTable,
    len: usize,
}

impl Rows {
    /// SAFETY: SPI_tuptable and SPI_processed must hold the result of the call just made.
    unsafe fn take() -> Rows {
        let table = unsafe { pg_sys::SPI_tuptable };
        let len = if table.is_null() {
            0
        } else {
            usize::try_from(unsafe { pg_sys::SPI_processed }).expect("row count fits usize")
        };
        Rows { table, len }
    }

    pub fn row(&self, i: usize) -> Row<'_> {
        assert!(i < self.len, "row {i} of {}", self.len);
        // SAFETY: i is within the table's rows.
        unsafe {
            Row {
                tuple: *(*self.table).vals.add(i),
                desc: (*self.table).tupdesc,
                _rows: std::marker::PhantomData,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn first(&self) -> Option<Row<'_>> {
        (self.len > 0).then(|| self.row(0))
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        (0..self.len).map(|i| self.row(i))
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        if !self.table.is_null() {
            // SAFETY: the table came from SPI and is freed once.
            unsafe { pg_sys::SPI_freetuptable(self.table) }
        }
    }
}

/// One row; values borrow from it. Columns are numbered from 1, as in SQL.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
    _rows: std::marker::PhantomData<&'a Rows>,
}

impl<'a> Row<'a> {
    /// Deforms the whole row into `values` and `nulls`, which hold the result's column count.
    pub fn deform_into(&self, values: &mut [pg_sys::Datum], nulls: &mut [bool]) {
        // SAFETY: tuple and descriptor belong to one live SPI result.
        let natts = usize::try_from(unsafe { (*self.desc).natts }).expect("natts is small");
        assert!(
            values.len() >= natts && nulls.len() >= natts,
            "{natts} columns"
        );
        // SAFETY: the arrays hold the descriptor's natts, checked above.
        unsafe {
            pg_sys::heap_deform_tuple(
                self.tuple,
                self.desc,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
            )
        }
    }

    pub fn datum(&self, col: i32) -> Option<pg_sys::Datum> {
        let mut is_null = false;
        // SAFETY: tuple and descriptor belong to one live SPI result.
        let d = unsafe { pg_sys::SPI_getbinval(self.tuple, self.desc, col, &mut is_null) };
        (!is_null).then_some(d)
    }

    pub fn int8(&self, col: i32) -> Option<i64> {
        self.datum(col).map(|d| d.value() as i64)
    }

    /// A text or bytea value's bytes.
    pub fn bytes(&self, col: i32) -> Option<&'a [u8]> {
        // SAFETY: the column is a varlena type, valid as long as the row.
        self.datum(col).map(|d| unsafe { varlena_bytes(d) })
    }

    pub fn uuid(&self, col: i32) -> Option<&'a [u8; 16]> {
        // SAFETY: the column is a uuid: a pointer to 16 bytes, valid as long as the row.
        self.datum(col)
            .map(|d| unsafe { &*d.cast_mut_ptr::<[u8; 16]>() })
    }
}

/// The bytes of a varlena datum, detoasted if needed (into the current memory context).
///
/// # Safety
/// `d` must be a varlena datum that outlives the returned slice.
pub unsafe fn varlena_bytes<'a>(d: pg_sys::Datum) -> &'a [u8] {
    use pgrx::varlena::{varatt_is_1b_e, varatt_is_4b_c, varlena_to_byte_slice};
    // SAFETY: d is a varlena datum that outlives the slice (the caller's promise); a detoasted
    // copy lives in the current memory context, which does too.
    unsafe {
        let v = d.cast_mut_ptr::<pg_sys::varlena>();
        // Most values sit uncompressed in the row: read them in place. Calling into PostgreSQL
        // costs a setjmp guard, which is a fair share of verification's time per column.
        if varatt_is_1b_e(v) || varatt_is_4b_c(v) {
            varlena_to_byte_slice(pg_sys::pg_detoast_datum_packed(v))
        } else {
            varlena_to_byte_slice(v)
        }
    }
}
