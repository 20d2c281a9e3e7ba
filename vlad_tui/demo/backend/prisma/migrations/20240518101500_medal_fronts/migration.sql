-- AlterTable
ALTER TABLE "medals" ADD COLUMN "medal_front_id" INTEGER;

-- CreateTable
CREATE TABLE "medal_fronts" (
    "id" SERIAL NOT NULL,
    "partner_id" INTEGER,
    "name" TEXT NOT NULL,
    "background_color" TEXT NOT NULL DEFAULT '#ffffff',
    "logo_url" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "medal_fronts_pkey" PRIMARY KEY ("id")
);

-- AddForeignKey
ALTER TABLE "medal_fronts" ADD CONSTRAINT "medal_fronts_partner_id_fkey" FOREIGN KEY ("partner_id") REFERENCES "partners"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "medals" ADD CONSTRAINT "medals_medal_front_id_fkey" FOREIGN KEY ("medal_front_id") REFERENCES "medal_fronts"("id") ON DELETE SET NULL ON UPDATE CASCADE;
