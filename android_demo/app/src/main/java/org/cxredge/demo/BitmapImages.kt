package org.cxredge.demo

import android.content.ContentResolver
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.net.Uri
import androidx.exifinterface.media.ExifInterface
import java.io.ByteArrayInputStream
import java.io.IOException
import org.cxredge.core.FloatImage
import org.cxredge.core.Greyscale
import org.cxredge.core.InputImageException

/**
 * Android's side of image decoding: bytes to ARGB pixels with `BitmapFactory`, then the core's
 * [Greyscale] rules (those of the Python reader) to the grey float image the pipeline takes.
 */
object BitmapImages {
    /** Files larger than this are refused before decoding. */
    const val MAX_BYTES = 256L * 1024 * 1024

    /** Decompression-bomb guard of the Python reader: at most 64 MP. */
    const val MAX_PIXELS = 64_000_000L

    /** Reads an image from a content URI (gallery pick or camera capture). */
    fun read(resolver: ContentResolver, uri: Uri, upright: Boolean): FloatImage {
        val data: ByteArray? = try {
            resolver.openInputStream(uri)?.use { it.readBytes() }
        } catch (e: IOException) {
            throw InputImageException("cannot read the image", "a readable file", e.message ?: "I/O error")
        }
        val bytes = data ?: throw InputImageException("cannot read the image", "a readable file", "no data")
        if (bytes.size > MAX_BYTES) {
            throw InputImageException("file too large", "at most $MAX_BYTES bytes", "${bytes.size} bytes")
        }
        return decode(bytes, upright)
    }

    /**
     * Decodes PNG or JPEG bytes.
     *
     * @param upright apply the EXIF orientation (camera photos). The Python reader does not, so gallery
     *     files are decoded without it, as Python would read them.
     */
    fun decode(bytes: ByteArray, upright: Boolean): FloatImage {
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        BitmapFactory.decodeByteArray(bytes, 0, bytes.size, bounds)
        val w = bounds.outWidth
        val h = bounds.outHeight
        if (w <= 0 || h <= 0) {
            throw InputImageException("not an image", "PNG or JPEG data", "data the decoder does not recognise")
        }
        if (w.toLong() * h > MAX_PIXELS) {
            throw InputImageException(
                "image dimensions exceed the decompression-bomb guard", "at most $MAX_PIXELS pixels", "${w}x$h",
            )
        }
        val options = BitmapFactory.Options().apply {
            inPreferredConfig = Bitmap.Config.ARGB_8888
            inScaled = false
            inPremultiplied = false
        }
        val bitmap = BitmapFactory.decodeByteArray(bytes, 0, bytes.size, options)
            ?: throw InputImageException("corrupt image data", "decodable pixels", "decoder error")
        val pixels = IntArray(w * h)
        bitmap.getPixels(pixels, 0, w, 0, 0, w, h)
        bitmap.recycle()
        if (!upright) {
            return Greyscale.fromArgb(pixels, w, h)
        }
        val orientation = ExifInterface(ByteArrayInputStream(bytes))
            .getAttributeInt(ExifInterface.TAG_ORIENTATION, ExifInterface.ORIENTATION_NORMAL)
        val (oriented, width) = orient(pixels, w, h, orientation)
        return Greyscale.fromArgb(oriented, width, oriented.size / width)
    }

    /** Applies an EXIF orientation (1..8) to ARGB pixels; returns them with their new width (5..8 swap sides). */
    fun orient(px: IntArray, w: Int, h: Int, orientation: Int): Pair<IntArray, Int> {
        if (orientation <= ExifInterface.ORIENTATION_NORMAL || orientation > ExifInterface.ORIENTATION_ROTATE_270) {
            return Pair(px, w)
        }
        val swap = orientation >= ExifInterface.ORIENTATION_TRANSPOSE
        val ow = if (swap) h else w
        val oh = if (swap) w else h
        val out = IntArray(px.size)
        for (y in 0 until oh) {
            for (x in 0 until ow) {
                // Source pixel of output (x, y) for each EXIF orientation.
                val (sx, sy) = when (orientation) {
                    ExifInterface.ORIENTATION_FLIP_HORIZONTAL -> Pair(w - 1 - x, y)
                    ExifInterface.ORIENTATION_ROTATE_180 -> Pair(w - 1 - x, h - 1 - y)
                    ExifInterface.ORIENTATION_FLIP_VERTICAL -> Pair(x, h - 1 - y)
                    ExifInterface.ORIENTATION_TRANSPOSE -> Pair(y, x)
                    ExifInterface.ORIENTATION_ROTATE_90 -> Pair(y, h - 1 - x)
                    ExifInterface.ORIENTATION_TRANSVERSE -> Pair(w - 1 - y, h - 1 - x)
                    else -> Pair(w - 1 - y, x) // ORIENTATION_ROTATE_270
                }
                out[y * ow + x] = px[sy * w + sx]
            }
        }
        return Pair(out, ow)
    }

    /** An opaque bitmap of ARGB pixels (for the overlay). */
    fun toBitmap(argb: IntArray, width: Int, height: Int): Bitmap =
        Bitmap.createBitmap(argb, width, height, Bitmap.Config.ARGB_8888)
}
