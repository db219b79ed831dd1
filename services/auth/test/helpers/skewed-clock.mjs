// Loaded with `node --import` (NODE_OPTIONS, so an instance's workers load it
// too): this process's wall clock, Date, reads SKEWED_CLOCK_MS milliseconds
// off, as on a host NTP has let drift or a VM resumed late. performance.now,
// a monotonic clock, is left alone, as such a host leaves it. faketime does
// the same from outside, but CI machines may lack it.
const skewMs = Number(process.env.SKEWED_CLOCK_MS ?? '')
if (!Number.isFinite(skewMs)) throw new Error(`SKEWED_CLOCK_MS must be a number of milliseconds, not ${JSON.stringify(process.env.SKEWED_CLOCK_MS)}`)

const HostDate = Date
class SkewedDate extends HostDate {
  constructor (...args) {
    if (args.length === 0) super(HostDate.now() + skewMs)
    else super(...args)
  }

  static now () {
    return HostDate.now() + skewMs
  }
}
globalThis.Date = SkewedDate
