package org.cxredge.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;

/**
 * Number formatting that reproduces Python's, so messages built by the core (e.g. the lung-crop
 * fallback reason) are the same strings the Python runtime writes.
 */
public final class PythonFormat {
    private PythonFormat() {
    }

    /** Python's {@code repr(float)}: the shortest decimal that reads back as the same double. */
    public static String repr(double v) {
        if (Double.isNaN(v)) {
            return "nan";
        }
        if (Double.isInfinite(v)) {
            return v > 0 ? "inf" : "-inf";
        }
        if (v == 0.0) {
            return (1.0 / v < 0) ? "-0.0" : "0.0";
        }
        BigDecimal exact = new BigDecimal(v);
        BigDecimal shortest = exact;
        for (int digits = 1; digits <= 17; digits++) {
            BigDecimal candidate = exact.round(new MathContext(digits, RoundingMode.HALF_EVEN));
            if (candidate.doubleValue() == v) {
                shortest = candidate;
                break;
            }
        }
        String unscaled = shortest.unscaledValue().abs().toString().replaceAll("0+$", "");
        if (unscaled.isEmpty()) {
            unscaled = "0";
        }
        // decimal exponent of the first digit: value = 0.d1d2... * 10^point
        int point = shortest.precision() - shortest.scale();
        int exponent = point - 1;
        String sign = v < 0 ? "-" : "";
        if (exponent < -4 || exponent >= 16) {
            String mantissa = unscaled.length() == 1 ? unscaled : unscaled.charAt(0) + "." + unscaled.substring(1);
            String exp = String.format("%02d", Math.abs(exponent));
            return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + exp;
        }
        String digits = unscaled;
        if (point <= 0) {
            StringBuilder zeros = new StringBuilder();
            for (int i = 0; i < -point; i++) {
                zeros.append('0');
            }
            return sign + "0." + zeros + digits;
        }
        if (point >= digits.length()) {
            StringBuilder whole = new StringBuilder(digits);
            for (int i = digits.length(); i < point; i++) {
                whole.append('0');
            }
            return sign + whole + ".0";
        }
        return sign + digits.substring(0, point) + "." + digits.substring(point);
    }

    /**
     * Python's {@code f"{v:.Nf}"}: the exact binary value rounded half to even to N decimals.
     */
    public static String fixed(double v, int decimals) {
        if (Double.isNaN(v) || Double.isInfinite(v)) {
            return repr(v);
        }
        String s = new BigDecimal(v).setScale(decimals, RoundingMode.HALF_EVEN).toPlainString();
        if (v < 0 || (v == 0.0 && 1.0 / v < 0)) {
            return s.startsWith("-") ? s : "-" + s;
        }
        return s;
    }
}
