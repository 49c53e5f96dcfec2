"""The table every scene stands on (both scene families; m, map frame: z up, table centred at the origin)."""

TABLE_TOP = 0.75
TABLE_HALF = (0.6, 0.45)
