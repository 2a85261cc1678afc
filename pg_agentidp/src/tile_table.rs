//! `agentidp.merkle_tiles` as a tile store: one chain's tiles, read and written with
//! parameterized SPI. Which tiles a tree needs, and how proofs are cut from them, is
//! `agentidp_core::tiles`'s.

use std::collections::HashMap;

use agentidp_core::tiles::{StoredTile, TileStore};
use pgrx::spi::{SpiClient, SpiResult};

/// One chain's tiles, read through an open SPI connection.
pub struct TileTable<'a, 'conn> {
    pub client: &'a SpiClient<'conn>,
    pub chain_id: &'a str,
}

impl TileStore for TileTable<'_, '_> {
    fn read(&self, tiles: &[(u8, u64)]) -> Result<Vec<Vec<u8>>, String> {
        let levels: Vec<i16> = tiles.iter().map(|&(l, _)| i16::from(l)).collect();
        let indexes = tiles
            .iter()
            .map(|&(_, n)| i64::try_from(n))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|_| "tile index out of range".to_owned())?;
        let rows = self
            .client
            .select(
                "SELECT t.level, t.idx, t.hashes
                   FROM unnest($2::int2[], $3::int8[]) AS wanted(level, idx)
                   JOIN agentidp.merkle_tiles t
                     ON t.chain_id = $1 AND t.level = wanted.level AND t.idx = wanted.idx",
                None,
                &[self.chain_id.into(), levels.into(), indexes.into()],
            )
            .map_err(|e| e.to_string())?;
        let mut found = HashMap::with_capacity(tiles.len());
        for row in rows {
            let level: i16 = row.get(1).map_err(|e| e.to_string())?.unwrap_or_default();
            let index: i64 = row.get(2).map_err(|e| e.to_string())?.unwrap_or_default();
            let hashes: Vec<u8> = row.get(3).map_err(|e| e.to_string())?.unwrap_or_default();
            found.insert((level, index), hashes);
        }
        Ok(tiles
            .iter()
            .map(|&(l, n)| {
                let key = (i16::from(l), i64::try_from(n).unwrap_or(-1));
                // A tile may be asked for twice, at two widths.
                found.get(&key).cloned().unwrap_or_default()
            })
            .collect())
    }
}

/// Stores grown tiles, each replacing the narrower one at its coordinates (the table's guard
/// refuses anything but growth).
pub fn write(client: &mut SpiClient<'_>, chain_id: &str, tiles: &[StoredTile]) -> SpiResult<()> {
    if tiles.is_empty() {
        return Ok(());
    }
    let levels: Vec<i16> = tiles.iter().map(|t| i16::from(t.level)).collect();
    let indexes: Vec<i64> = tiles
        .iter()
        .map(|t| i64::try_from(t.index).unwrap_or(i64::MAX))
        .collect();
    let hashes: Vec<Vec<u8>> = tiles.iter().map(|t| t.hashes.clone()).collect();
    client.update(
        "INSERT INTO agentidp.merkle_tiles (chain_id, level, idx, hashes)
         SELECT $1, * FROM unnest($2::int2[], $3::int8[], $4::bytea[])
         ON CONFLICT (chain_id, level, idx) DO UPDATE SET hashes = excluded.hashes",
        None,
        &[
            chain_id.into(),
            levels.into(),
            indexes.into(),
            hashes.into(),
        ],
    )?;
    Ok(())
}
