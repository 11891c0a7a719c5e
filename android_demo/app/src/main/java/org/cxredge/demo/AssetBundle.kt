package org.cxredge.demo

import android.content.res.AssetManager
import java.io.FileNotFoundException
import org.cxredge.core.BundleFormatException
import org.cxredge.core.BundleManifest
import org.cxredge.core.LoadedBundle
import org.cxredge.core.ModelFile
import org.cxredge.core.TrustPolicy

/**
 * A cxr-edge bundle packaged in the APK's assets (`assets/bundle/`: `manifest.json`, the `.tflite` files and
 * the self-test it pins, and `signature.json` when it is signed), loaded by the core's [LoadedBundle] like the
 * Python `Bundle.load`: with trusted keys packaged in `assets/trusted_keys/*.pem` (`-PcxrTrustedKeys`), the
 * bundle must be signed by one of them and unchanged since signing; then the manifest is parsed and checked,
 * and every file it pins must be present and match its sha256, or the bundle is refused.
 */
class AssetBundle private constructor(private val loaded: LoadedBundle) {
    /** The parsed manifest. */
    val manifest: BundleManifest get() = loaded.manifest()

    /** `unsigned`, or who signed it and whether the packaged trusted keys verified it. */
    val signatureStatus: String get() = loaded.signatureStatus()

    /** The verified bytes of a model file. */
    fun bytesOf(model: ModelFile): ByteArray = loaded.bytesOf(model)

    companion object {
        /** Folder of the bundle inside `assets/` (filled by the app's `copyCxrAssets` Gradle task). */
        const val FOLDER = "bundle"

        /** Folder of the trusted public keys inside `assets/` (none: unsigned bundles load). */
        const val TRUSTED_KEYS = "trusted_keys"

        /** Loads and verifies the bundle in `assets/<folder>`. */
        fun load(assets: AssetManager, folder: String = FOLDER): AssetBundle {
            val source = object : LoadedBundle.Source {
                override fun read(name: String): ByteArray? = try {
                    assets.open("$folder/$name").use { it.readBytes() }
                } catch (e: FileNotFoundException) {
                    null
                }

                override fun describe(): String = "assets/$folder (see android_demo/README.md)"
            }
            return AssetBundle(LoadedBundle.load(source, trustPolicy(assets)))
        }

        /** The packaged trusted keys, or null when there are none. */
        fun trustPolicy(assets: AssetManager): TrustPolicy? {
            val names = (assets.list(TRUSTED_KEYS) ?: emptyArray()).filter { it.endsWith(".pem") }.sorted()
            if (names.isEmpty()) return null
            val pems = names.map { name ->
                assets.open("$TRUSTED_KEYS/$name").use { it.readBytes().toString(Charsets.UTF_8) }
            }
            return TrustPolicy.fromPem("assets/$TRUSTED_KEYS", pems)
        }
    }
}
